"""The recipe schema: one typed dataclass per section, composed into `Recipe`.

OmegaConf uses these dataclasses as structured-config schemas, so an unknown key or a value of
the wrong type is rejected while the YAML is merged, and every section's `__post_init__` checks
ranges when the recipe is turned into objects: all before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from toolkit.bench.config import BenchConfig
from toolkit.core.errors import ConfigError, check_choice, check_range
from toolkit.core.runtime import RuntimeConfig
from toolkit.eval.config import EvalConfig
from toolkit.io.jsonl import MAX_PROMPT_CHARS
from toolkit.lpo.config import (
    CollectConfig,
    DataConfig,
    TrainConfig,
    TrainerConfig,
)
from toolkit.methods.options import DecodingConfig, GraftConfig, chat_template_setting

DTYPES = ("auto", "float32", "float16", "bfloat16")
SOURCES = ("path", "preset", "tiny", "random_shape")


@dataclass
class ModelConfig:
    """Where the model comes from: exactly one of `path`, `preset`, `tiny` or `random_shape`.

    path: a local directory, either a Hugging Face causal LM (config.json + weights) that gets
        grafted, or an augmented checkpoint (augment_config.json) that is loaded as saved.
    gguf_file: with `path`, the name of a GGUF file in that directory; it is dequantized by
        transformers' GGUF loader (needs the `gguf` package).
    preset: a named pretrained model the toolkit fetches and prepares once into the cache
        (`toolkit.sources.presets`), e.g. 'smollm2-135m-instruct'.
    tiny: a family name ('llama', ...) for the built-in tiny seeded model (no download).
    random_shape: a named shape with random weights (benchmarks only), e.g. 'llama-7b'.
    dtype: 'auto' = float32 on CPU (half precision is slow there and moves scores) and the
        checkpoint's own dtype on a GPU; or float32 / float16 / bfloat16.
    """

    path: Optional[str] = None
    gguf_file: Optional[str] = None
    preset: Optional[str] = None
    tiny: Optional[str] = None
    random_shape: Optional[str] = None
    seed: int = 0
    dtype: str = "auto"
    device_map: Optional[str] = None

    def __post_init__(self) -> None:
        check_choice("model.dtype", self.dtype, DTYPES)

    def check_source(self) -> None:
        """Raise ConfigError unless exactly one model source is set."""
        sources = {k: getattr(self, k) for k in SOURCES}
        given = [k for k, v in sources.items() if v not in (None, "")]
        if len(given) != 1:
            named = ", ".join(f"model.{k}" for k in given) if given else "none of them"
            raise ConfigError(
                f"set exactly one of {', '.join('model.' + k for k in SOURCES)} "
                f"(got {named}); e.g. model.preset=smollm2-135m-instruct or model.path=/path/to/model"
            )
        if self.gguf_file and not self.path:
            raise ConfigError(
                "model.gguf_file needs model.path, the directory holding it; e.g. "
                "model.path=/models/dir model.gguf_file=model.Q4_K_M.gguf"
            )


@dataclass
class GenerateConfig:
    """What `generate` reads and writes.

    prompts: prompts given inline (e.g. `generate.prompts='[Hello]'` on the command line);
    input: a JSONL file with one object per line holding `prompt_field`;
    output: JSONL written in input order (one object per prompt, with `completion`,
        `finish_reason` -- "stop" when an end token ended the reply, "length" when
        max_new_tokens did --, `empty`, true when the end token came first, `prompt_tokens`,
        `completion_tokens` (the end token counted), `temperature` (the adaptive head's: one
        value at sequence level, one per reply token at token level; null without the head)
        and, with `logprobs`, each reply token's log-probability), one line per
        prompt as each batch finishes; a rerun resumes after the lines already there (refused
        when they came from another model, decoding or prompt convention, unless
        `force_resume`); when unset, completions are printed to the terminal (a single prompt
        streams; an empty reply is shown as a note saying the end token came first).
    chat_template: auto (the convention the checkpoint's head was trained with, else the chat
        template when the tokenizer has one), on or off: with the template each plain prompt
        becomes a user turn followed by the generation prompt; prompts that already hold the
        template's markers, and JSONL prompts given as a list of {role, content} messages,
        are not wrapped again.
    """

    prompts: list[str] = field(default_factory=list)
    input: Optional[str] = None
    prompt_field: str = "prompt"
    output: Optional[str] = None
    batch_size: int = 8
    force_resume: bool = False
    chat_template: str = "auto"
    logprobs: bool = False

    def __post_init__(self) -> None:
        check_range("generate.batch_size", self.batch_size, low=1)
        self.chat_template = chat_template_setting("generate.chat_template", self.chat_template)
        for number, prompt in enumerate(self.prompts):
            if not prompt:
                raise ConfigError(
                    f"generate.prompts[{number}] is empty; give some text to continue"
                )
            if len(prompt) > MAX_PROMPT_CHARS:
                raise ConfigError(
                    f"generate.prompts[{number}] has {len(prompt)} characters, more than the "
                    f"{MAX_PROMPT_CHARS} a prompt may hold; shorten it"
                )
        if self.prompts and self.input:
            raise ConfigError(
                "generate.prompts and generate.input are both set; give prompts inline or "
                "a JSONL file, not both"
            )


SERVE_DTYPES = ("auto", "float32", "float16", "bfloat16")


@dataclass
class ServeConfig:
    """`serve`: vLLM's OpenAI-compatible server on the recipe's model (docs/serving.md).

    host, port: where it listens. dtype: vLLM's `--dtype` (auto: the model's own). tensor_parallel_size:
    GPUs per replica. max_model_len, gpu_memory_utilization (on CPU: the share of RAM its KV cache
    takes): vLLM's defaults when unset. enforce_eager: no torch.compile (needed for the tap of
    architectures without vLLM's auxiliary hidden states, e.g. Gemma 3). args: further vLLM
    command-line options, as written (e.g. ['--max-num-seqs', '64']).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    dtype: str = "auto"
    tensor_parallel_size: int = 1
    max_model_len: Optional[int] = None
    gpu_memory_utilization: Optional[float] = None
    enforce_eager: bool = False
    args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_choice("serve.dtype", self.dtype, SERVE_DTYPES)
        check_range("serve.port", self.port, low=1, high=65535)
        check_range("serve.tensor_parallel_size", self.tensor_parallel_size, low=1)
        if self.max_model_len is not None:
            check_range("serve.max_model_len", self.max_model_len, low=1)
        if self.gpu_memory_utilization is not None:
            check_range("serve.gpu_memory_utilization", self.gpu_memory_utilization, low=0.0,
                        high=1.0, low_open=True)


@dataclass
class Recipe:
    """A whole recipe. Every section has defaults, so a YAML file names only what it changes.

    output_dir holds the augmented checkpoint only (saving replaces the directory as a whole);
    work_dir holds everything else a run writes: pairs, feature cache, eval and bench reports.
    imports: Python modules imported before the rest of the recipe is read, e.g. a package of
    your own that registers a decoding method (`toolkit.methods.register`); installed packages
    with a `model_surgery.methods` entry point need no entry here.
    """

    imports: list[str] = field(default_factory=list)
    run_name: str = "run"
    output_dir: str = "checkpoints/${run_name}"
    work_dir: str = "runs/${run_name}"
    model: ModelConfig = field(default_factory=ModelConfig)
    graft: GraftConfig = field(default_factory=GraftConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    eval: EvalConfig = field(default_factory=lambda: EvalConfig(output_dir="${work_dir}/eval"))
    bench: BenchConfig = field(default_factory=lambda: BenchConfig(output_dir="${work_dir}/bench"))
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def __post_init__(self) -> None:
        self.model.check_source()
