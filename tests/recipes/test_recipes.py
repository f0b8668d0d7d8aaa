"""Recipe schema and loading: every shipped recipe validates; bad input fails in one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolkit.core.errors import ConfigError
from toolkit.methods.options import DecodingConfig
from toolkit.recipes import Recipe, load_recipe
from toolkit.recipes.load import merged_config, resolved_yaml

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.fixture
def tiny_recipe(tmp_path) -> Path:
    return write(tmp_path, "run_name: demo\nmodel:\n  tiny: llama\n")


def test_recipes_exist():
    names = {p.name for p in RECIPES}
    assert {"quickstart.yaml", "tiny.yaml", "sled_llama2_7b.yaml", "mixtral_8x7b_sled.yaml"} <= names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_every_recipe_loads_and_validates(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    assert isinstance(recipe.decoding, DecodingConfig)
    sources = [recipe.model.path, recipe.model.preset, recipe.model.tiny, recipe.model.random_shape]
    assert sum(s is not None for s in sources) == 1
    assert recipe.output_dir == f"checkpoints/{recipe.run_name}"
    assert "${" not in resolved_yaml(merged_config(path))
    if recipe.model.path is not None:
        written = {load_recipe(p).output_dir for p in RECIPES if p != path}
        assert recipe.model.path.startswith("/path/to/") or recipe.model.path in written, \
            "real-model recipes name a placeholder or a checkpoint a shipped recipe writes"


def test_reference_hyperparameters():
    sled = {p.stem: load_recipe(p).decoding.sled for p in RECIPES if "sled" in p.stem}
    assert (sled["sled_llama2_7b"].evolution_rate, sled["sled_llama2_7b"].evolution_scale) == (
        2.5,
        75,
    )
    assert (sled["sled_llama3_8b"].evolution_rate, sled["sled_llama3_8b"].evolution_scale) == (
        2.5,
        100,
    )
    mixtral = load_recipe(Path(RECIPES[0].parent, "mixtral_8x7b_sled.yaml"))
    assert (mixtral.decoding.sled.evolution_scale, mixtral.model.device_map) == (50, "auto")


def test_quickstart_is_the_real_model_on_the_built_in_task():
    recipe = load_recipe(Path(RECIPES[0].parent, "quickstart.yaml"))
    assert recipe.model.preset == "smollm2-135m-instruct" and recipe.model.dtype == "auto"
    assert recipe.data.prompts is None and recipe.data.task == "arith_writing"
    assert recipe.data.arith_writing.token_head
    assert recipe.trainer.accelerator == "cpu"


def test_the_gemma3_recipes_use_its_preset_and_the_measured_norm_default():
    for name in ("sled_gemma3.yaml", "bench_gemma3.yaml"):
        recipe = load_recipe(Path(RECIPES[0].parent, name))
        assert recipe.model.preset == "gemma3-270m", name
        assert recipe.graft.early_exit_norm is None, "the model type's default (true for Gemma 3)"
    sled = load_recipe(Path(RECIPES[0].parent, "sled_gemma3.yaml"))
    assert (sled.eval.task, sled.eval.modes) == ("truthfulqa", ["greedy", "dola", "sled"])


def test_tiny_is_tiny_synthetic_cpu():
    recipe = load_recipe(Path(RECIPES[0].parent, "tiny.yaml"))
    assert recipe.model.tiny == "llama" and recipe.data.prompts is None
    assert recipe.trainer.accelerator == "cpu"
    d = recipe.decoding
    assert d.sled.enabled and d.top_n_sigma.enabled and d.adaptive_temperature.enabled
    assert recipe.graft.head.level == "sequence"


def test_interpolation_follows_run_name(tiny_recipe):
    recipe = load_recipe(tiny_recipe, ["run_name=other"])
    assert recipe.output_dir == "checkpoints/other"
    assert recipe.data.pairs == "runs/other/pairs.jsonl"
    assert recipe.eval.output_dir == "runs/other/eval"


def test_overrides_are_typed(tiny_recipe):
    recipe = load_recipe(
        tiny_recipe,
        [
            "decoding.sled.enabled=true",
            "decoding.sled.evolution_scale=20",
            "graft.layers=[1,2]",
            "generate.prompts=[Hello there, Bye]",
            "decoding.top_k=null",
        ],
    )
    assert recipe.decoding.sled.enabled is True and recipe.decoding.sled.evolution_scale == 20
    assert list(recipe.graft.layers) == [1, 2]
    assert recipe.generate.prompts == ["Hello there", "Bye"]
    assert recipe.decoding.top_k is None


def error_of(path, overrides=()) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(path, overrides)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_key_suggests_closest(tiny_recipe):
    message = error_of(tiny_recipe, ["decoding.sled.evolution_sacle=5"])
    assert "unknown key 'decoding.sled.evolution_sacle'" in message
    assert "did you mean 'decoding.sled.evolution_scale'" in message
    assert "in override 'decoding.sled.evolution_sacle=5'" in message


def test_scalar_given_for_a_section(tiny_recipe):
    assert "expected a mapping of SledOptions keys, got int" in error_of(
        tiny_recipe, ["decoding.sled=3"]
    )


def test_unknown_key_in_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "model:\n  tiny: llama\ndecoding:\n  max_new_tokns: 5\n")
    message = error_of(path)
    assert f"{path}:4" in message and "'decoding.max_new_tokens'" in message


def test_unknown_key_without_close_match_lists_valid_keys(tiny_recipe):
    message = error_of(tiny_recipe, ["zzzz=1"])
    assert "valid keys here" in message and "decoding" in message


def test_wrong_type_names_key_and_expected_type(tiny_recipe):
    message = error_of(tiny_recipe, ["decoding.sled.evolution_scale=many"])
    assert "wrong type for decoding.sled.evolution_scale" in message
    assert "'many'" in message and "expected int" in message
    assert "expected float" in error_of(tiny_recipe, ["graft.head.temperatures=[0.1,x]"])
    assert "expected bool" in error_of(tiny_recipe, ["decoding.do_sample=maybe"])
    assert "list of str" in error_of(tiny_recipe, ["generate.prompts=hello"])


def test_out_of_range(tiny_recipe):
    assert "out of range" in error_of(tiny_recipe, ["decoding.sled.evolution_scale=0"])
    assert "not allowed" in error_of(tiny_recipe, ["trainer.strategy=mpi"])
    assert "enable at most one" in error_of(
        tiny_recipe, ["decoding.sled.enabled=true", "decoding.dola.enabled=true"]
    )


def test_malformed_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "model:\n  tiny: llama\ndecoding: [1, 2\nrun_name: x\n")
    message = error_of(path)
    assert message.startswith(f"malformed YAML in {path}:4")


def test_missing_and_odd_recipe_files(tmp_path):
    assert "recipe file not found" in error_of(tmp_path / "nope.yaml")
    assert "a mapping" in error_of(write(tmp_path, "- 1\n- 2\n"))
    assert "not key=value" in error_of(write(tmp_path, "model: {tiny: llama}\n"), ["oops"])


def test_exactly_one_model_source(tmp_path):
    assert "none of them" in error_of(write(tmp_path, "run_name: x\n"))
    both = error_of(write(tmp_path, "model:\n  tiny: llama\n  path: /x\n"))
    assert "model.path, model.tiny" in both


def test_bad_interpolation(tiny_recipe):
    assert "cannot resolve output_dir" in error_of(tiny_recipe, ["output_dir=${nope}/x"])


@settings(max_examples=25, deadline=None)
@given(scale=st.integers(-5, 300), rate=st.floats(-2, 5, allow_nan=False))
def test_sled_overrides_validate_like_the_dataclass(tmp_path_factory, scale, rate):
    path = write(tmp_path_factory.mktemp("h"), "model: {tiny: llama}\n")
    overrides = [f"decoding.sled.evolution_scale={scale}", f"decoding.sled.evolution_rate={rate!r}"]
    if scale >= 1 and rate > 0:
        sled = load_recipe(path, overrides).decoding.sled
        assert (sled.evolution_scale, sled.evolution_rate) == (scale, rate)
    else:
        assert "out of range" in error_of(path, overrides)


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("data.template=Q: {question} A:", "data.template", "Q: {question} A:"),
        # the shell passes \n as two characters; inside YAML double quotes it becomes a newline
        ("generate.prompts=[Q: Why is the sky blue?\\nA:]", "generate.prompts",
         ["Q: Why is the sky blue?\nA:"]),
    ],
)
def test_override_value_that_is_not_yaml_suggests_a_fix_that_works(tiny_recipe, override, key,
                                                                    expected):
    message = error_of(tiny_recipe, [override])
    assert "not valid YAML; put it in double quotes" in message
    suggestion = message.rsplit("e.g. ", 1)[1]
    fixed = suggestion.replace("='", "=", 1)[:-1]  # the shell strips the single quotes
    section, field = key.split(".")
    assert getattr(getattr(load_recipe(tiny_recipe, [fixed]), section), field) == expected




def test_command_line_prompts_replace_the_recipes_and_the_other_way_round(tmp_path):
    inline = write(tmp_path, "model:\n  tiny: llama\ngenerate:\n  prompts: [Hello]\n")
    recipe = load_recipe(inline, ["generate.input=in.jsonl"])
    assert (recipe.generate.input, recipe.generate.prompts) == ("in.jsonl", [])
    from_file = write(tmp_path, "model:\n  tiny: llama\ngenerate:\n  input: in.jsonl\n", "f.yaml")
    recipe = load_recipe(from_file, ["generate.prompts=[Hi]"])
    assert (recipe.generate.input, recipe.generate.prompts) == (None, ["Hi"])
    both = write(tmp_path, "model:\n  tiny: llama\ngenerate:\n  input: a.jsonl\n  prompts: [Hi]\n",
                 "b.yaml")
    with pytest.raises(ConfigError, match="both set"):
        load_recipe(both)
