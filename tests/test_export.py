"""`plasticity-dist export`: a real trainer checkpoint as a Hugging Face folder whose logits equal ours, whose
tokenizer gives our ids, and which lm-eval evaluates offline."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plasticity_dist.cli import main
from plasticity_dist.data.tokenizer import ByteTokenizer, load_tokenizer
from plasticity_dist.engine.checkpoint import load_consolidated_weights
from plasticity_dist.export import hf_tokenizer
from plasticity_dist.model.gpt import GPT
from plasticity_dist.model.presets import get_preset
from test_tokenizer import TEXTS, _save_bpe

ENGLISH = ["the cat sat on the mat with a hat.", "a small dog runs to the big house near the tree."]  # the model's
OFFLINE = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
LM_EVAL_TASK = """task: plasticity_local
dataset_path: json
dataset_kwargs:
  data_files:
    test: {documents}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: bits_per_byte
"""


def last_checkpoint(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / (run_dir / "checkpoints" / "latest").read_text().strip()


@pytest.fixture(scope="module")
def exported(zero3_reference, tmp_path_factory):
    """The ZeRO-3 reference run's last checkpoint (saved by 2 ranks), exported through the command line."""
    out = tmp_path_factory.mktemp("export") / "hf"
    assert main(["export", "--checkpoint", str(last_checkpoint(zero3_reference)), "--out", str(out)]) == 0
    return out


def our_model(checkpoint: Path) -> GPT:
    model = GPT(get_preset("100K").gpt_config(ByteTokenizer.vocab_size, 32))
    model.load_state_dict(load_consolidated_weights(checkpoint, list(model.state_dict())))
    return model.eval()


def test_the_exported_model_gives_our_logits(exported, zero3_reference):
    from transformers import AutoModelForCausalLM

    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md"} <= {p.name for p in exported.iterdir()}
    theirs = AutoModelForCausalLM.from_pretrained(exported).eval()
    ids = torch.randint(0, ByteTokenizer.vocab_size, (3, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours_logits, their_logits = our_model(last_checkpoint(zero3_reference))(ids), theirs(ids).logits
    assert (ours_logits - their_logits).abs().max().item() <= 1e-5


def test_the_exported_tokenizer_gives_our_ids_and_the_card_names_the_checkpoint(exported, zero3_reference):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(exported)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids == ByteTokenizer().encode(text) and tokenizer.decode(ids) == text
    assert tokenizer.eos_token_id == ByteTokenizer.eot_id
    card = (exported / "README.md").read_text()
    checkpoint = last_checkpoint(zero3_reference)
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    assert checkpoint.name in card and f"tokens seen: {state['tokens_seen']:,}" in card


def test_a_hugging_face_tokenizer_a_dataset_was_made_with_is_exported_as_is(tmp_path):
    spec = f"hf:{_save_bpe(tmp_path / 'bpe', eos_token='<|endoftext|>')}"
    exported = hf_tokenizer(spec)
    for text in TEXTS:
        assert exported(text, add_special_tokens=False)["input_ids"] == load_tokenizer(spec).encode(text)


def test_export_all_writes_every_kept_checkpoint(zero3_reference, tmp_path):
    assert main(["export", "--all", str(zero3_reference), "--out", str(tmp_path)]) == 0
    kept = sorted(path.name for path in (zero3_reference / "checkpoints").iterdir() if path.is_dir())
    assert sorted(path.name for path in tmp_path.iterdir()) == kept
    assert all((tmp_path / tag / "model.safetensors").is_file() for tag in kept)


def test_export_of_a_missing_checkpoint_is_one_clear_error(tmp_path, capsys):
    assert main(["export", "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2
    assert f"checkpoint {tmp_path / 'nope'} does not exist" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_lm_eval_evaluates_the_export_offline_on_a_local_task(exported, tmp_path):
    documents = tmp_path / "documents.jsonl"
    documents.write_text("".join(json.dumps({"text": text}) + "\n" for text in ENGLISH))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "plasticity_local.yaml").write_text(LM_EVAL_TASK.format(documents=documents))
    finished = subprocess.run(
        [str(Path(sys.executable).parent / "lm_eval"), "--model", "hf", "--model_args",
         f"pretrained={exported},dtype=float32", "--tasks", "plasticity_local", "--include_path", str(tasks),
         "--device", "cpu", "--batch_size", "1", "--output_path", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=600, env=OFFLINE, cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = [json.loads(path.read_text()) for path in (tmp_path / "results").rglob("results_*.json")]
    bits_per_byte = results[0]["results"]["plasticity_local"]["bits_per_byte,none"]
    assert 0 < bits_per_byte < math.log2(ByteTokenizer.vocab_size)  # finite, and better than uniform over ids
