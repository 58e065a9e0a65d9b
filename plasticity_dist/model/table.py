"""Parameter counts of the size presets, as rows for JSON and as a rich table."""

from __future__ import annotations

from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from plasticity_dist.model.presets import PRESETS


def preset_rows(vocab_size: int, seq_len: int) -> list[dict[str, Any]]:
    """One row per preset; counts come from instantiating the model on the meta device (no memory)."""
    rows = []
    for preset in PRESETS:
        with torch.device("meta"):
            model = preset.build(vocab_size, seq_len)
        non_embedding = model.num_params(non_embedding=True)
        rows.append({
            "name": preset.name,
            "n_layer": preset.n_layer,
            "d_model": preset.d_model,
            "n_head": preset.n_head,
            "non_embedding_params": non_embedding,
            "total_params": model.num_params(non_embedding=False),
            "error_vs_name_pct": round(100 * (non_embedding / preset.nominal_params - 1), 2),
            "vocab_size": vocab_size,
            "seq_len": seq_len,
        })
    return rows


def print_preset_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"Model presets (vocab {rows[0]['vocab_size']}, context {rows[0]['seq_len']})")
    for column in ("name", "layers", "width", "heads", "non-embedding", "vs name", "total"):
        table.add_column(column, justify="left" if column == "name" else "right")
    for row in rows:
        table.add_row(
            row["name"], str(row["n_layer"]), str(row["d_model"]), str(row["n_head"]),
            f"{row['non_embedding_params']:,}", f"{row['error_vs_name_pct']:+.2f}%", f"{row['total_params']:,}",
        )
    Console().print(table)
