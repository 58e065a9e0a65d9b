import pytest

from plasticity_dist.study.config_files import config_to_yaml, load_config
from plasticity_dist.study.errors import ConfigError


def write(tmp_path, text):
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_yaml_with_overrides_round_trips_through_the_resolved_yaml(tmp_path):
    path = write(tmp_path, "model: {preset: 5M}\ncurriculum:\n  cycles: 3\n  tasks: [{name: en}, {name: zh}]\n")
    config = load_config(path, ["data.seq_len=512", "optimizer.lr=3e-4", "curriculum.task_tokens=5e9"])
    assert config.model.preset == "5M"
    assert config.curriculum.cycles == 3
    assert [task.name for task in config.curriculum.tasks] == ["en", "zh"]
    assert config.data.seq_len == 512
    assert config.optimizer.lr == 3e-4
    assert config.curriculum.task_tokens == 5_000_000_000
    resolved = write(tmp_path, config_to_yaml(config))
    assert load_config(resolved) == config


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.preset=7M", "'model.preset': '7M' is not allowed; allowed: 12.4K, 28K, 50K, 100K"),
        ("curriculum.task_tokens=-5", "'curriculum.task_tokens': -5 is below the minimum 1"),
        ("data.seq_len=long", "'data.seq_len': expected int, got 'long'"),
        ("data.seq_len=3.5", "'data.seq_len': expected int, got 3.5"),
        ("data.sequence_length=5", "unknown config key data.sequence_length; did you mean data.seq_len?"),
        ("data.micro_batch_size=3", "data.global_batch_size=8 is not a multiple of data.micro_batch_size=3"),
        ("launch.zero_stage=4", "'launch.zero_stage': 4 is not allowed; allowed: 0, 1, 2, 3"),
        ("curriculum.tasks=[]", "curriculum.tasks is empty"),
        ("curriculum.tasks=[{tokens: 5}]", "'curriculum.tasks[0]' lacks required field(s): name"),
        ("no_equals_sign", "not of the form key.sub=value"),
        ("probe.every_task_cycles=-1", "'probe.every_task_cycles': -1 is below the minimum 0"),
        ("probe.every_task_cycles=two", "'probe.every_task_cycles': expected int, got 'two'"),
        ("replicates=0", "'replicates': 0 is below the minimum 1"),
        ("mitigations.snr.threshold=1", "mitigations.snr: threshold=1.0 must be in (0, 1)"),
        ("mitigations.snr.decay=1", "and decay=1.0 in [0, 1)"),
        ("mitigations.spectral_reg.power_iterations=0", "'mitigations.spectral_reg.power_iterations': 0 is below"),
        ("mitigations.hare_tortoise.decay=1", "mitigations.hare_tortoise.decay=1.0 must be in [0, 1)"),
        ("mitigations.hare_tortoise.every_steps=0", "'mitigations.hare_tortoise.every_steps': 0 is below the minimum 1"),
    ],
)
def test_bad_values_fail_with_one_line_naming_the_key(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bf16_without_zero_is_refused_naming_both_keys():
    with pytest.raises(ConfigError, match=r"launch.precision=bf16 needs ZeRO \(launch.zero_stage 1, 2 or 3\)"):
        load_config(None, ["launch.zero_stage=0", "launch.precision=bf16"])
    assert load_config(None, ["launch.zero_stage=0", "launch.precision=auto"]).launch.zero_stage == 0


@pytest.mark.parametrize(
    "override, message",
    [
        ("optimizer.lrr=1", "unknown config key optimizer.lrr; did you mean optimizer.lr? allowed: lr, betas, eps, "
                            "fused, weight_decay, grad_clip, schedule, warmup_steps, min_lr_ratio"),
        ("optimizer.zzz=1", "unknown config key optimizer.zzz; allowed: lr, betas, eps, fused, weight_decay, grad_clip, "
                            "schedule, warmup_steps, min_lr_ratio"),
    ],
)
def test_unknown_key_names_the_full_key_and_its_nearest_field(override, message):
    with pytest.raises(ConfigError) as error:
        load_config(None, [override])
    assert str(error.value) == message


def test_unknown_key_in_a_nested_section_names_the_nearest_field_by_its_full_key():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["probe.slurm.partion=gpu"])
    assert str(error.value).startswith(
        "unknown config key probe.slurm.partion; did you mean probe.slurm.partition? allowed: partition, account,"
    )


def test_missing_and_malformed_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="does-not-exist.yaml does not exist"):
        load_config(tmp_path / "does-not-exist.yaml")
    with pytest.raises(ConfigError, match="exp.yaml must hold a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))
