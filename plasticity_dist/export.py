"""`plasticity-dist export`: a checkpoint as a Hugging Face folder that transformers and lm-eval load offline.

Our decoder is GPT-2 without biases and with exact GELU, so `GPT2LMHeadModel` with zero biases,
`activation_function="gelu"`, tied embeddings and `n_positions` = our context represents it exactly (GPT-2's
Conv1D layers hold our Linear weights transposed). The weights come from the checkpoint's ZeRO shards through
DeepSpeed's consolidation, as a probe's do; the checkpoint is only read. The folder holds the weights as
safetensors, the config, the tokenizer the data was made with (the byte tokenizer as a `tokenizers`
byte-level model whose ids are the bytes and 256 the end-of-text) and a model card naming run, tag, tokens
seen and cycle. It is written to `<out>.tmp` and renamed, so a folder at `out` is always complete.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from plasticity_dist.common.logging import get_logger
from plasticity_dist.common.run_layout import RunLayout
from plasticity_dist.data.tokenizer import BYTE_SPEC, END_OF_TEXT, HF_PREFIX, ByteTokenizer, load_tokenizer
from plasticity_dist.engine.checkpoint import complete_checkpoints, load_consolidated_weights
from plasticity_dist.engine.checkpoint_files import read_trainer_state
from plasticity_dist.model.gpt import GPT
from plasticity_dist.model.presets import get_preset
from plasticity_dist.study.config_files import load_config

log = get_logger()
# ours -> GPT-2's, per block; Linear weights are transposed into GPT-2's Conv1D layout
BLOCK_NAMES = {"ln_attn": "ln_1", "attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj", "ln_mlp": "ln_2",
               "mlp.up": "mlp.c_fc", "mlp.down": "mlp.c_proj"}
LINEAR = ("attn.qkv", "attn.proj", "mlp.up", "mlp.down")


def gpt2_weights(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under GPT-2's names (lm_head is tied to wte, so it is not listed)."""
    ours = model.state_dict()
    weights = {"transformer.wte.weight": ours["tok_emb.weight"], "transformer.wpe.weight": ours["pos_emb.weight"],
               "transformer.ln_f.weight": ours["ln_out.weight"]}
    for index in range(model.config.n_layer):
        for name, theirs in BLOCK_NAMES.items():
            weight = ours[f"blocks.{index}.{name}.weight"]
            weights[f"transformer.h.{index}.{theirs}.weight"] = weight.t() if name in LINEAR else weight
    return weights


def to_gpt2(model: GPT, eot_id: int) -> Any:
    """A `GPT2LMHeadModel` computing exactly what `model` computes (fp32, no dropout)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    shape = model.config
    config = GPT2Config(vocab_size=shape.padded_vocab_size, n_positions=shape.block_size, n_embd=shape.d_model,
                        n_layer=shape.n_layer, n_head=shape.n_head, activation_function="gelu",
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                        tie_word_embeddings=True, bos_token_id=eot_id, eos_token_id=eot_id)
    gpt2 = GPT2LMHeadModel(config)
    state = gpt2.state_dict()
    state.update({name: torch.zeros_like(value) for name, value in state.items() if name.endswith(".bias")})
    state.update(gpt2_weights(model))
    state["lm_head.weight"] = state["transformer.wte.weight"]
    gpt2.load_state_dict(state)
    return gpt2.eval()


def byte_characters() -> list[str]:
    """GPT-2's byte-level alphabet: the character that stands for each byte 0..255 (printable bytes as
    themselves, the others shifted above U+00FF)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    shifted = iter(range(256, 512))
    return [chr(byte) if byte in printable else chr(next(shifted)) for byte in range(256)]


def byte_tokenizer() -> Any:
    """Our byte tokenizer as a Hugging Face fast tokenizer: byte-level, no merges, id = byte, 256 = end-of-text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    end = END_OF_TEXT
    vocab = {character: byte for byte, character in enumerate(byte_characters())}
    tokenizer = Tokenizer(models.BPE(vocab={**vocab, end: ByteTokenizer.eot_id}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([end])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=end, bos_token=end, unk_token=end)


def hf_tokenizer(spec: str) -> Any:
    """The tokenizer a dataset was made with, as a Hugging Face tokenizer."""
    if spec == BYTE_SPEC:
        return byte_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spec.removeprefix(HF_PREFIX))


def model_card(run_dir: Path, tag: str, state: dict[str, Any], preset: str, params: int) -> str:
    return "\n".join([
        f"# plasticity-dist checkpoint {tag}", "",
        f"- run: `{run_dir}`", f"- checkpoint: `{tag}`", f"- model: {preset} ({params:,} non-embedding parameters)",
        f"- tokens seen: {state['tokens_seen']:,}", f"- tasks trained: {state['task_index']}",
        f"- cycle: {state.get('probe_cycle', 'not a cycle end')}", f"- tokenizer: {state['tokenizer']}", "",
        "GPT-2 architecture without biases (they are zero) and with exact GELU, exported by `plasticity-dist "
        "export`; its logits equal the trainer's model on the same ids.", ""])


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> Path:
    """Write the Hugging Face folder of one checkpoint to `out`; returns it."""
    checkpoint, out = Path(checkpoint), Path(out)
    state = read_trainer_state(checkpoint)
    run_dir = RunLayout.of_checkpoint(checkpoint)
    config = load_config(run_dir.config)
    tokenizer = load_tokenizer(state["tokenizer"])
    model = get_preset(config.model.preset).build(tokenizer.vocab_size, config.data.seq_len)
    model.load_state_dict(load_consolidated_weights(checkpoint, list(model.state_dict())))
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    to_gpt2(model, tokenizer.eot_id).save_pretrained(staging)  # safetensors: the default since transformers 4.35
    hf_tokenizer(state["tokenizer"]).save_pretrained(staging)
    (staging / "README.md").write_text(model_card(run_dir.root, checkpoint.name, state, config.model.preset,
                                                  model.num_params()))
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    log.info(f"exported {checkpoint} → {out}")
    return out


def kept_checkpoints(run_dir: str | Path) -> list[Path]:
    """A run's complete checkpoints, in training order."""
    folder = RunLayout(run_dir).checkpoints
    if not folder.is_dir():
        raise FileNotFoundError(f"{run_dir} has no checkpoints folder")
    return complete_checkpoints(folder)


def export_all(run_dir: str | Path, out: str | Path) -> list[Path]:
    """Export every kept checkpoint of a run (its cycle ends, for evaluation over cycles) to `out/<tag>`."""
    return [export_checkpoint(checkpoint, Path(out) / checkpoint.name) for checkpoint in kept_checkpoints(run_dir)]
