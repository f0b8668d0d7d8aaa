"""AugmentedModel: a frozen Hugging Face causal LM with an early-exit tap and an adaptive head.

Generation runs through the base model's own `generate()` (KV cache, left padding, stopping
criteria, streamers) with the LogitsProcessors of the call's decoding plan, in its order
(`toolkit.methods.plan`, made into processors by `toolkit.graft.composition.compose`).
transformers' own temperature/top-k/top-p/repetition warpers are switched off so they neither
run twice nor change that order.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from transformers import LogitsProcessorList, PreTrainedModel

from toolkit import methods
from toolkit.core.errors import CheckpointError, DataError
from toolkit.graft import checkpoint, hf_generate, pointer, probe, prompting
from toolkit.graft.composition import Composed, compose
from toolkit.graft.families import model_parts
from toolkit.graft.head import AdaptiveDecoderHead
from toolkit.graft.processors import FiniteLogitsCheck, RowSeeds, SeededSampling
from toolkit.graft.records import AugmentedOutput, reply_mask, stack_steps
from toolkit.graft.tap import EarlyExitTap
from toolkit.methods.options import DecodingConfig, GraftConfig
from toolkit.methods.plan import plan
from toolkit.sources import hub, references
from toolkit.sources.base import load_base
from toolkit.sources.tokenizer_files import load_tokenizer


@contextlib.contextmanager
def _random_stream(seed: int | None, seeds: list[int] | None, device: torch.device):
    """Torch's global random stream for one generate() call: seeded with `seed` when the call
    asks for one (as transformers' `set_seed`), left as it is after a call with one seed per
    prompt (`seeds`: those rows draw from their own generators), untouched otherwise."""
    if seeds is not None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            yield
        return
    if seed is not None:
        torch.manual_seed(seed)
    yield


class AugmentedModel:
    """A frozen causal LM plus the grafted tap and AdaptiveDecoder head (see DESIGN.md).

    Shaped like the transformers model it wraps where a caller expects one: `generate(inputs)`,
    `device`, `dtype`, `config`, `generation_config`, `to()`, `can_generate()`, so
    `pipeline("text-generation", model=am, tokenizer=am.tokenizer)` decodes through it.
    """

    def __init__(self, base: PreTrainedModel, graft_config: GraftConfig, tokenizer=None,
                 decoding: DecodingConfig | None = None, base_reference: str | None = None,
                 prompt_format: str | None = None):
        self.base = base.requires_grad_(False).eval()
        self.tokenizer = prompting.set_up_for_generation(tokenizer)
        # The prompt convention the head was trained with ("chat" / "raw"; None: unknown).
        self.prompt_format = prompt_format
        self.decoding = decoding or DecodingConfig()
        self.parts = model_parts(base)
        self.tap = EarlyExitTap(base, layers=graft_config.layers,
                                early_exit_norm=graft_config.early_exit_norm)
        probe.check_tap(base)
        # the model type's default made explicit, so a saved checkpoint records the choice
        self.graft_config = replace(graft_config, early_exit_norm=self.tap.early_exit_norm)
        d_model = base.config.get_text_config().hidden_size
        self.head = AdaptiveDecoderHead(d_model, graft_config.head).to(self.head_device)
        self.base_reference = (references.model_source(base) if base_reference is None
                               else base_reference)

    @classmethod
    def graft(cls, base: PreTrainedModel | str | Path, config: GraftConfig | None = None,
              tokenizer=None, *, device_map=None, dtype=None) -> AugmentedModel:
        """Graft the tap and an untrained head onto a base model.

        Args:
            base: a loaded causal LM, or a local directory or Hub id (`org/name`) to load it
                (and the tokenizer saved beside it) from, through the toolkit's one base-model
                loader.
            config: what to graft (default: `GraftConfig()`).
            tokenizer: overrides the tokenizer found beside `base`; either one is set up for
                generation (left padding, the end token as pad token when it has none).
            device_map: transformers' device_map when loading `base` from a directory.
            dtype: a torch dtype or "auto" when loading `base` from a directory.

        Returns:
            The AugmentedModel (base frozen, head on lm_head's device).
        """
        if isinstance(base, (str, Path)):
            reference = references.absolute_source(str(base))
            base, loaded_tokenizer = load_base(base, device_map, dtype)
            tokenizer = tokenizer or loaded_tokenizer
        else:
            reference = references.model_source(base)
        return cls(base, config or GraftConfig(), tokenizer, base_reference=reference)

    @property
    def device(self) -> torch.device:
        """The base model's device (its first parameters' under a device_map), as transformers
        reports it."""
        return self.base.device

    @property
    def dtype(self) -> torch.dtype:
        return self.base.dtype

    @property
    def config(self) -> Any:
        """The base model's config."""
        return self.base.config

    @property
    def generation_config(self) -> Any:
        """The base model's generation_config (the defaults of unset sampling settings)."""
        return self.base.generation_config

    def can_generate(self) -> bool:
        return True

    def to(self, *args, **kwargs) -> AugmentedModel:
        """Move (or cast) the base as `nn.Module.to` does; the head follows lm_head's device and
        keeps its float32. Returns this model, as transformers' `to` does."""
        self.base.to(*args, **kwargs)
        self.head.to(self.head_device)
        return self

    @property
    def head_device(self) -> torch.device:
        """The head and tap live where lm_head is (the last shard under device_map)."""
        return self.parts.lm_head.weight.device

    @property
    def max_positions(self) -> int | None:
        """The base's max_position_embeddings (None when its config has none)."""
        return getattr(self.base.config.get_text_config(), "max_position_embeddings", None)

    @property
    def vocab_size(self) -> int:
        return self.parts.lm_head.weight.shape[0]

    def generate(self, inputs: torch.Tensor | None = None,
                 attention_mask: torch.Tensor | None = None, *,
                 decoding: DecodingConfig | None = None, return_records: bool = False,
                 **kwargs) -> Any:
        """Generate with the base model's `generate()` and this model's processors.

        Args:
            inputs: (B, T_prompt) prompt ids, left padded (`encode` gives them), as
                transformers' `generate(inputs)`; or pass them as `input_ids=`. Rows padded on
                the right are moved to the left first, so they give the same tokens.
            attention_mask: (B, T_prompt), default all ones.
            decoding: the options (default: `self.decoding`, the checkpoint's default).
            return_records: return an `AugmentedOutput` with per-step records (rows that
                finished early keep being recorded; see its `reply_mask`).
            **kwargs: our decoding options (`sled=True`, `top_n_sigma=1.5`, `seed=0`, ...),
                applied over `decoding` by `toolkit.methods.options.with_overrides`; one that
                switches a logits-stage method on replaces the one `decoding` enables (one INFO
                line says so, `toolkit.methods.options.replacing_saved`); every other keyword
                that transformers' `generate()` or `GenerationConfig` accepts (eos_token_id,
                pad_token_id, min_new_tokens, stop_strings, num_return_sequences, min_p,
                generation_config, streamer, stopping_criteria, return_dict_in_generate, ...)
                passes through (`toolkit.graft.hf_generate`). eos and pad default to the base's
                generation_config (else the tokenizer). Randomness is transformers': torch's
                global random stream, left alone unless the call asks for a seed (`seed=`, or
                the `seed` of a `decoding=` it passes; the checkpoint's saved seed is the CLI's
                run seed, not applied here): `seed=s` seeds it (and the adaptive head's
                generator) with s; `seed=[s1, s2, ...]` gives each prompt its own stream, so a
                sampled batch equals its prompts decoded one at a time with those seeds, and
                leaves the global stream as it was. Sampling settings follow transformers'
                rules: unset ones come from the base's generation_config; a passed
                generation_config or keyword overrides them; `top_k=0` means no top-k
                (`toolkit.graft.hf_generate`).

        Returns:
            What transformers returns (the sequences (B, T_prompt + T_new), or its output object
            with `return_dict_in_generate=True`), or with `return_records` an `AugmentedOutput`
            (the transformers output object in its `generate_output`).

        Raises:
            ConfigError: unknown or invalid options, or options this model cannot run.
        """
        input_ids = prompting.prompt_ids(inputs, kwargs.pop("input_ids", None))
        seeds = hf_generate.row_seeds(kwargs, input_ids.shape[0])
        overrides, hf = hf_generate.split(kwargs)
        saved = replace(self.decoding, seed=None) if decoding is None else decoding
        source = "the checkpoint's decoding" if decoding is None else "decoding="
        options = hf_generate.effective_options(saved, overrides, hf,
                                                self.base.generation_config, source)
        self.check_decoding(options)
        hf_generate.check(options, hf, seeds)
        device = self.base.device
        input_ids = input_ids.to(device)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        attention_mask = attention_mask.to(device)
        input_ids, attention_mask = prompting.left_aligned(input_ids, attention_mask)
        prompting.check_rows(attention_mask)
        prompting.check_room(input_ids.shape[1], options.max_new_tokens, self.max_positions)
        self.head.to(self.head_device)
        rows = hf_generate.setting(hf, "num_return_sequences", 1)
        composed = compose(plan(options), self.tap.for_layers, head=self.head,
                           per_token=self.graft_config.head.level == "token",
                           attention_mask=attention_mask, record=return_records,
                           seed=options.seed if seeds is None else seeds, rows_per_seed=rows)
        drawn = ([SeededSampling(RowSeeds(seeds, rows, device))]
                 if seeds is not None and options.do_sample else [])
        processors = LogitsProcessorList([FiniteLogitsCheck(), *composed.processors(),
                                          *(hf.pop("logits_processor", None) or []), *drawn])
        gen_kwargs = hf_generate.kwargs_for(options, hf, self.base.generation_config,
                                            self.tokenizer, explicit=overrides)
        capture = (composed.tap.capture(last_only=True) if composed.tap
                   else contextlib.nullcontext())
        with torch.no_grad(), _random_stream(options.seed, seeds, device), capture:
            output = self.base.generate(input_ids, attention_mask=attention_mask,
                                        logits_processor=processors, **gen_kwargs)
        if not return_records:
            return output
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        eos = hf_generate.eos_ids(hf, self.base.generation_config, self.tokenizer)
        records = self._records(sequences, input_ids.shape[1], composed, eos)
        if not isinstance(output, torch.Tensor):
            records.generate_output = output
        return records

    def encode(self, prompts: Any, chat_template: str = "auto") -> Any:
        """Prompts -> a left-padded `BatchEncoding` (input_ids, attention_mask) for `generate`.

        Args:
            prompts: a string, a list of strings, a conversation (a list of {"role",
                "content"} messages) or a list of conversations.
            chat_template: "auto" (the convention the head was trained with, `prompt_format`;
                unknown: the template when the tokenizer has one), "on" or "off". With the
                template a plain string becomes a user turn with the generation prompt;
                strings that already hold the template's markers are used as written.
        """
        return prompting.encode(self.tokenizer, self.render_prompts(prompts, chat_template))

    def render_prompts(self, prompts: Any, chat_template: str = "auto") -> list[str]:
        """The prompt texts `encode` tokenizes (same arguments)."""
        chat = self.prompt_convention(chat_template) == prompting.CHAT
        return prompting.render(self.tokenizer, prompting.as_batch(prompts), chat)

    def prompt_convention(self, chat_template: str = "auto") -> str:
        """"chat" or "raw" for a chat_template setting (see `encode`)."""
        if self.tokenizer is None:
            raise DataError("the AugmentedModel has no tokenizer; pass tokenizer= when grafting")
        return prompting.convention(self.tokenizer, chat_template, self.prompt_format)

    def check_decoding(self, options: DecodingConfig) -> None:
        """Raise ConfigError when an enabled method's options do not fit this model (e.g.
        SLED's evolution_scale above the vocabulary); generate and eval both call it."""
        for method in methods.active(options):
            if method.check is not None:
                method.check(options.method(method.name), self.vocab_size)

    def _records(self, sequences: torch.Tensor, prompt_length: int, composed: Composed,
                 eos: list[int]) -> AugmentedOutput:
        replies = sequences[:, prompt_length:]
        steps = replies.shape[1]
        out = AugmentedOutput(sequences=sequences, reply_mask=reply_mask(replies, eos))
        if composed.adaptive is not None:
            index = stack_steps(composed.adaptive.records, steps)
            out.records[methods.get("adaptive_temperature").record_field] = index
            out.temperature = self.head.temperatures[index].float()
        early_exit = composed.early_exit
        if early_exit is not None and early_exit.method.record_field and early_exit.records:
            out.records[early_exit.method.record_field] = stack_steps(early_exit.records, steps)
        out.layers = composed.layers
        return out

    @torch.no_grad()
    def head_features(self, input_ids: torch.Tensor,
                      attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The head's inputs: final-norm hidden states of every position (frozen forward pass).

        Args:
            input_ids: (B, T) token ids.
            attention_mask: (B, T), default all ones.

        Returns:
            (B, T, d) on the head's device and in its dtype (e.g. for LPO's feature cache).
        """
        device = self.base.device
        mask = None if attention_mask is None else attention_mask.to(device)
        out = self.parts.decoder(input_ids=input_ids.to(device), attention_mask=mask,
                                 use_cache=False)
        weight = next(self.head.parameters())
        return out.last_hidden_state.to(device=weight.device, dtype=weight.dtype)

    def push_to_hub(self, repo_id: str, **kwargs) -> Any:
        """Save the checkpoint and upload it to the Hub repo `repo_id` (see
        `toolkit.graft.publish.push_to_hub` for the options); returns the commit info."""
        from toolkit.graft.publish import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    def save_pretrained(self, directory, self_contained: bool = False) -> Path:
        """Write the checkpoint atomically (see `toolkit.graft.checkpoint` for its layout).

        Args:
            directory: the target; a save replaces it as a whole, so it must be new, empty or
                a checkpoint this toolkit wrote.
            self_contained: also write the base model under `base/`.

        Returns:
            The resolved checkpoint directory.
        """
        return checkpoint.save(
            directory, base=self.base, base_reference=self.base_reference, head=self.head,
            tokenizer=self.tokenizer, graft_config=self.graft_config, decoding=self.decoding,
            self_contained=self_contained, prompt_format=self.prompt_format)

    @classmethod
    def from_pretrained(cls, base_or_directory, directory=None, *, device_map=None, dtype=None,
                        base: PreTrainedModel | str | Path | None = None) -> AugmentedModel:
        """Load a checkpoint in one call: `from_pretrained(ckpt)`, or as in PEFT
        `from_pretrained(base_model, ckpt)` with the base loaded or a directory.

        Args:
            base_or_directory: the checkpoint, or the base when `directory` follows.
            directory: a directory written by `save_pretrained`, or the Hub id (`org/name`)
                of one, fetched through huggingface_hub (`toolkit.sources.hub`); the saved base
                reference may be a preset, a Hub id or a path relative to the checkpoint.
            device_map: transformers' device_map ("auto", a dict, ...) for the base; the head
                and the tap follow lm_head's device.
            dtype: a torch dtype (or "auto") for the base.
            base: the base model (loaded, or a directory) instead of the saved reference; its
                architecture and sampled weights must match the saved fingerprint.

        Returns:
            The AugmentedModel with the saved head (strict key and shape check), graft config,
            default decoding options, tokenizer and the prompt convention the head was
            trained with (`prompt_format`).
        """
        if directory is None:
            directory = base_or_directory
        elif base is not None:
            raise CheckpointError("the base is given twice (first argument and base=); give it "
                                  "once: from_pretrained(base, ckpt) or from_pretrained(ckpt, "
                                  "base=base)")
        else:
            base = base_or_directory
        ckpt = checkpoint.read(hub.local_dir(directory))
        base_tokenizer = None
        if base is None or isinstance(base, (str, Path)):
            source = ckpt.base_path if base is None else str(base)
            owner = ckpt.directory if base is None else None
            base, base_tokenizer = load_base(source, device_map, dtype, owner=owner,
                                             from_hub=base is None and ckpt.base_on_hub)
            reference = references.absolute_source(source)
        else:
            reference = references.model_source(base)
        checkpoint.check_fingerprint(ckpt, base, reference or "the given base model")
        # told the base's config: the checkpoint's own config.json is the pointer
        tokenizer = (load_tokenizer(ckpt.directory, config=base.config) if ckpt.has_tokenizer
                     else base_tokenizer)
        model = cls(base, ckpt.graft, tokenizer, decoding=ckpt.decoding, base_reference=reference,
                    prompt_format=ckpt.prompt_format)
        checkpoint.load_head(model.head, ckpt)
        return model


pointer.register(AugmentedModel)
