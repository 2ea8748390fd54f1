"""The embedded local model, run in process: no network, no key.

Two runtimes for the same GGUF file. llama-cpp-python is the default (measured here on 2
threads: 0.6 s load, ~38 tok/s decode, ~100 tok/s prefill). transformers dequantises the GGUF
to fp32 (~60 s load, 2-5 tok/s, 3.9 GB; needs the `gguf` and `accelerate` packages) but no
compiler; it is chosen when llama_cpp is not importable. Both render prompts with the chat
template carried in the GGUF, tools included, and parse tool calls out of the reply text,
since the model writes them as JSON (fenced or in <tool_call> tags), not as structured output.

llama-cpp-python keeps the evaluated prefix of the previous prompt: a call whose prompt starts
like the last one evaluates only the rest, and every reply reports how many prompt tokens were
reused. Option scoring (agent/llm/scoring.py) reads the next-token logits after evaluating
the prompt, with no generation, and goes through the same prefix reuse.

Timeouts are real in both: decoding stops at the deadline through a stopping criterion
(llama.cpp) or max_time (transformers), and the call raises LLMTimeout. Prompt evaluation
itself cannot be interrupted: a 1,300-token prompt takes ~13 s with llama.cpp.
"""

import importlib.util
import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np

from agent.llm.base import LLM, ChatMessage, LLMError, LLMReply, LLMTimeout
from agent.llm.parsing import parse_tool_calls, tool_names
from agent.llm.scoring import (
    OptionScores,
    OrderingScore,
    check_options,
    combine,
    menu_messages,
    option_labels,
    option_orders,
    ordering_score,
)

Runtime = Literal["auto", "llama_cpp", "transformers"]


def _template_messages(messages: Sequence[ChatMessage]) -> list[dict[str, str]]:
    # Qwen's template renders role "tool" as a <tool_response> block in a user turn.
    return [{"role": m.role, "content": m.content} for m in messages]


def _require_file(model_path: Path) -> None:
    if not model_path.is_file():
        raise LLMError(f"no model at {model_path}; run `toolrec models get`")


def _deadline(timeout: float | None, default: float | None, start: float) -> float | None:
    budget = timeout if timeout is not None else default
    return None if budget is None else start + budget


class LlamaCppLLM:
    """A GGUF model through llama-cpp-python. One generation at a time (a lock guards the
    context); consecutive calls that share a prompt prefix reuse its evaluated KV cache."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        n_threads: int = 2,
        default_timeout: float | None = None,
    ) -> None:
        _require_file(model_path)
        import llama_cpp
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.name = f"llama_cpp:{model_path.stem}"
        self.default_timeout = default_timeout
        start = time.monotonic()
        self._llama = llama_cpp.Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            verbose=False,
        )
        self.load_seconds = time.monotonic() - start
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise LLMError(f"{model_path} carries no chat template")
        eos_id, bos_id = self._llama.token_eos(), self._llama.token_bos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(eos_id),
            bos_token=self._token_text(bos_id),
            stop_token_ids=[eos_id],
        )
        self._lock = threading.Lock()

    def _token_text(self, token_id: int) -> str:
        if token_id < 0:
            return ""
        return self._llama.detokenize([token_id], special=True).decode("utf-8", errors="replace")

    def _tokens(
        self, messages: Sequence[ChatMessage], tools: list[dict[str, Any]] | None
    ) -> tuple[list[int], list[str] | str | None, list[Any]]:
        """The prompt's tokens, with the template's stop strings and stopping criteria."""
        # The formatter is typed with llama_cpp's TypedDicts; these dicts have that shape.
        rendered = self._formatter(messages=cast(Any, _template_messages(messages)), tools=cast(Any, tools))
        prompt = self._llama.tokenize(rendered.prompt.encode("utf-8"), add_bos=not rendered.added_special, special=True)
        if len(prompt) + 1 >= self._llama.n_ctx():
            raise LLMError(f"{self.name}: prompt of {len(prompt)} tokens exceeds n_ctx {self._llama.n_ctx()}")
        return prompt, rendered.stop, list(rendered.stopping_criteria or [])

    def _cached_prefix(self, prompt: Sequence[int]) -> int:
        """How many leading tokens of `prompt` the context already holds evaluated."""
        held = self._llama.input_ids[: self._llama.n_tokens]
        common = 0
        for a, b in zip(held, prompt, strict=False):
            if a != b:
                break
            common += 1
        return common

    def forget_prefix(self) -> None:
        """Drop the evaluated prefix, so that the next call evaluates its whole prompt (a cold
        call: what prefix reuse is checked against)."""
        with self._lock:
            self._llama.reset()

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        timeout: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> LLMReply:
        import llama_cpp

        with self._lock:
            start = time.monotonic()
            deadline = _deadline(timeout, self.default_timeout, start)
            prompt, stop, template_criteria = self._tokens(messages, tools)
            # What llama.cpp's generate() will keep: the common prefix, less one token when the
            # whole prompt is held (its logits must be recomputed), unless the last call ended
            # exactly there with live logits.
            common = self._cached_prefix(prompt)
            exact = common == len(prompt) == self._llama.n_tokens
            live = exact and not self._llama._requires_eval
            reused = common if live else min(common, len(prompt) - 1)
            out_of_time = False

            def past_deadline(_ids: Any, _logits: Any) -> bool:
                nonlocal out_of_time
                out_of_time = deadline is not None and time.monotonic() >= deadline
                return out_of_time

            criteria = [past_deadline, *template_criteria]
            grammar = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(json_schema), verbose=False) if json_schema is not None else None
            result = self._llama.create_completion(
                prompt=prompt,
                max_tokens=min(max_tokens, self._llama.n_ctx() - len(prompt)),
                temperature=temperature,
                seed=seed,
                stop=stop,
                # Neutral: JSON legitimately repeats quotes and braces, and max_tokens bounds loops.
                repeat_penalty=1.0,
                stopping_criteria=llama_cpp.StoppingCriteriaList(criteria),
                grammar=grammar,
            )
            seconds = time.monotonic() - start
        assert isinstance(result, dict)  # not streaming
        usage = result["usage"]
        if out_of_time:
            raise LLMTimeout(f"{self.name}: past the deadline; stopped after {seconds:.1f}s and {usage['completion_tokens']} tokens")
        text = result["choices"][0]["text"].strip()
        return LLMReply(
            text=text,
            tool_calls=parse_tool_calls(text, tool_names(tools)) if tools else [],
            prompt_tokens=usage["prompt_tokens"],
            prompt_tokens_reused=reused,
            completion_tokens=usage["completion_tokens"],
            seconds=seconds,
            model=self.name,
        )

    def _label_token_ids(self, n: int) -> list[int]:
        ids = []
        for label in option_labels(n):
            tokens = self._llama.tokenize(label.encode("utf-8"), add_bos=False, special=False)
            if len(tokens) != 1:
                raise LLMError(f"{self.name}: option number {label!r} is not a single token")
            ids.append(tokens[0])
        return ids

    def _next_token_logprobs(self, prompt: list[int]) -> tuple[np.ndarray, int]:
        """Evaluate `prompt`, reusing the held prefix, and return the log-softmax of the
        next-token logits and the number of prompt tokens reused. At least the last token is
        evaluated, since only a live decode leaves its logits in the context."""
        reused = min(self._cached_prefix(prompt), len(prompt) - 1)
        self._llama.n_tokens = reused  # eval() drops the KV cache from here on
        self._llama.eval(prompt[reused:])
        logits = np.ctypeslib.as_array(self._llama._ctx.get_logits_ith(-1), shape=(self._llama.n_vocab(),)).astype(np.float64)
        top = logits.max()
        return logits - top - np.log(np.exp(logits - top).sum()), reused

    def score_options(
        self,
        messages: Sequence[ChatMessage],
        options: Sequence[str],
        *,
        orderings: int = 2,
        timeout: float | None = None,
    ) -> OptionScores:
        """The model's preference over `options` (see agent/llm/scoring.py): one prompt
        evaluation per ordering, no token generated."""
        check_options(messages, options)
        label_ids = self._label_token_ids(len(options))
        scored: list[OrderingScore] = []
        with self._lock:
            start = time.monotonic()
            deadline = _deadline(timeout, self.default_timeout, start)
            for order in option_orders(len(options), orderings):
                if deadline is not None and time.monotonic() >= deadline:
                    raise LLMTimeout(f"{self.name}: past the deadline after {len(scored)} orderings")
                began = time.monotonic()
                prompt, _, _ = self._tokens(menu_messages(messages, options, order), None)
                logprobs, reused = self._next_token_logprobs(prompt)
                scored.append(
                    ordering_score(
                        order,
                        [float(logprobs[t]) for t in label_ids],
                        prompt_tokens=len(prompt),
                        tokens_reused=reused,
                        seconds=time.monotonic() - began,
                    )
                )
            seconds = time.monotonic() - start
        return combine(self.name, "logprobs", options, scored, seconds)


class TransformersLLM:
    """The same GGUF through transformers (dequantised to fp32 on load). Slow; for machines
    where llama-cpp-python cannot be built."""

    def __init__(self, model_path: Path, *, n_threads: int = 2, default_timeout: float | None = None) -> None:
        _require_file(model_path)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.name = f"transformers:{model_path.stem}"
        self.default_timeout = default_timeout
        torch.set_num_threads(n_threads)
        start = time.monotonic()
        directory, gguf = str(model_path.parent), model_path.name
        # Any: transformers' Auto* return types are too loose for mypy to follow generate().
        self._tokenizer: Any = AutoTokenizer.from_pretrained(directory, gguf_file=gguf)
        self._model: Any = AutoModelForCausalLM.from_pretrained(directory, gguf_file=gguf)
        eos = self._model.generation_config.eos_token_id
        self._eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.load_seconds = time.monotonic() - start
        self._lock = threading.Lock()

    def chat(
        self,
        messages: Sequence[ChatMessage],
        *,
        tools: list[dict[str, Any]] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
        timeout: float | None = None,
        json_schema: dict[str, Any] | None = None,
    ) -> LLMReply:
        """`json_schema` is not enforced here (transformers has no grammar sampler); the reply
        is validated downstream (agent/llm/parsing.py) as for any backend."""
        import torch

        with self._lock:
            start = time.monotonic()
            deadline = _deadline(timeout, self.default_timeout, start)
            inputs = self._tokenizer.apply_chat_template(
                _template_messages(messages),
                tools=tools,
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
            torch.manual_seed(seed)
            sampling: dict[str, Any] = (
                {"do_sample": True, "temperature": temperature}
                if temperature > 0
                else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
            )
            with torch.inference_mode():
                output = self._model.generate(
                    **inputs,
                    max_new_tokens=max_tokens,
                    max_time=None if deadline is None else max(deadline - time.monotonic(), 0.0),
                    pad_token_id=self._tokenizer.eos_token_id,
                    **sampling,
                )
            seconds = time.monotonic() - start
        n_prompt = int(inputs["input_ids"].shape[1])
        new_tokens = output[0, n_prompt:].tolist()
        # Generation stops at EOS, at max_tokens, or at max_time; only the last is a timeout.
        ended = bool(new_tokens) and new_tokens[-1] in self._eos_ids
        capped = len(new_tokens) >= max_tokens
        if deadline is not None and not (ended or capped) and time.monotonic() >= deadline:
            raise LLMTimeout(f"{self.name}: past the deadline; stopped after {seconds:.1f}s and {len(new_tokens)} tokens")
        text = self._tokenizer.decode(new_tokens, skip_special_tokens=True).strip()
        return LLMReply(
            text=text,
            tool_calls=parse_tool_calls(text, tool_names(tools)) if tools else [],
            prompt_tokens=n_prompt,
            completion_tokens=len(new_tokens),
            seconds=seconds,
            model=self.name,
        )


def resolve_runtime(runtime: Runtime) -> Literal["llama_cpp", "transformers"]:
    if runtime != "auto":
        return runtime
    return "llama_cpp" if importlib.util.find_spec("llama_cpp") is not None else "transformers"


def load_embedded(
    model_path: Path,
    *,
    runtime: Runtime = "auto",
    n_ctx: int = 4096,
    n_threads: int = 2,
    default_timeout: float | None = None,
) -> LLM:
    if resolve_runtime(runtime) == "llama_cpp":
        return LlamaCppLLM(model_path, n_ctx=n_ctx, n_threads=n_threads, default_timeout=default_timeout)
    return TransformersLLM(model_path, n_threads=n_threads, default_timeout=default_timeout)
