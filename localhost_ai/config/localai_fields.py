"""Every field of LocalAI's model config (its `core/config`, at commit 82c191a), and what this
server does with it: acts on it, accepts it with a warning that it is ignored (in the log and
in `GET /system`), or refuses the file, naming the field.  The README's table is made from
this one (`table_markdown`), and a test checks that every key path LocalAI's config has is
here, so a field LocalAI adds shows up as a failing test rather than as silence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

USED, IGNORED, REFUSED = "used", "ignored", "refused"


@dataclass(frozen=True)
class Field:
    status: str
    note: str
    # For a field refused only at some values: whether this value is refused (otherwise the
    # field is used or ignored, as `status` says, and `note` says which values are refused).
    refused_if: Callable[[Any], bool] | None = None
    whole: bool = False  # a block whose fields all share this status: not looked into
    # For an ignored field, whether this value has some part that is ignored (default: any value).
    ignores: Callable[[Any], bool] | None = None


def _used(note: str, refused_if: Callable[[Any], bool] | None = None) -> Field:
    return Field(USED, note, refused_if)


def _ignored(note: str, whole: bool = False, refused_if: Callable[[Any], bool] | None = None,
             ignores: Callable[[Any], bool] | None = None) -> Field:
    return Field(IGNORED, note, refused_if, whole, ignores)


# LocalAI's llama.cpp option that this server follows anyway: a GGUF's own template is Jinja.
_FOLLOWED_OPTIONS = frozenset({"use_jinja", "jinja"})


def _options_ignored(value: Any) -> bool:
    items = value if isinstance(value, list) else [value]
    return any(str(item).split(":", 1)[0].strip() not in _FOLLOWED_OPTIONS for item in items)


def _refused(note: str, whole: bool = False) -> Field:
    return Field(REFUSED, note, None, whole)


_GPU = "a GPU setting; this server runs on the CPU"
_VLLM = "a vLLM engine setting; this server has no vLLM backend"
_ROPE = ("RoPE and YaRN come from the GGUF; a context_size above the trained length is refused when the model "
         "loads, so no override is needed")
_SD_PIPELINES = (None, "", "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "DiffusionPipeline")
_XML = "XML tool calls are not parsed; calls are read as JSON (under a grammar) or as JSON objects naming a tool"
_NO_DOWNLOAD = "this server downloads nothing a model file names: the weights must be in the models folder"


FIELDS: dict[str, Field] = {
    'name': _used("the API model id; default: the file's stem"),
    'artifacts': _ignored('this server downloads nothing a model YAML names (weights must already be in the models folder; a model whose weights exist only as an artifact is refused for its missing parameters.model)', whole=True),
    'alias': _refused('a pure redirect to another model; this server has no aliases, and LocalAI forbids parameters.model on an alias, so the file names no model to serve'),
    'f16': _ignored("KV cache is llama.cpp's default f16 anyway; diffusers runs float32 on CPU"),
    'threads': _used("CPU threads of the worker's backend"),
    'debug': _ignored('per-model debug switch; this server logs prompts with --log-level DEBUG'),
    'roles': Field(USED, "role prefixes for LocalAI's Go templates: .Role, and the prefix when there is no chat_message",
                   whole=True),
    'embeddings': _used('makes a llama-cpp model an embeddings model'),
    'backend': _used('picks the backend; unknown names refuse the file'),
    'template': _used('prompt templates: see its fields'),
    'known_usecases': _used("`rerank` (or `FLAG_RERANK`) makes a sentence-transformers model a reranker; the other usecases "
                              "are told from the backend here"),
    'known_input_modalities': _ignored("input modalities are told from the backend and the mmproj's own metadata"),
    'known_output_modalities': _ignored('output modalities are told from the backend'),
    'pipeline': _ignored("LocalAI's realtime / audio-to-audio pipeline; no realtime endpoint here", whole=True),
    'function': _used('tool-calling settings: see its fields'),
    'reasoning': _ignored("reasoning is not split out here: a model's thinking stays in the reply text", whole=True),
    'compression': _ignored('chat history is never compressed here; a chat too long for the context is refused with context_length_exceeded', whole=True),
    'reasoning_effort': _ignored('not forwarded: Go templates see .ReasoningEffort as "" and Jinja templates get no kwarg; \'none\' does not turn thinking off here'),
    'chat_template_kwargs': _ignored('not passed to the Jinja chat template, which gets only messages, tools, add_generation_prompt, bos/eos and system_prompt', whole=True),
    'feature_flags': _ignored("LocalAI's per-model feature flags (only 'usage' is read in its core)", whole=True),
    'diffusers': _ignored('the diffusers block: see its fields'),
    'step': _used('default diffusion steps when a request gives none and parameters.steps is unset'),
    'grpc': _ignored("LocalAI's gRPC backend connection retries; workers here are local processes", whole=True),
    'tts': _ignored("LocalAI's TTS defaults; piper reads parameters.speaker etc. here", whole=True),
    'cuda': _ignored(_GPU),
    'download_files': _ignored(_NO_DOWNLOAD, whole=True),
    'description': _used('shown in GET /system'),
    'usage': _used("shown in GET /system beside the description"),
    'disabled': _used("refused when true: a disabled model is not served (the file is listed under /system's "
                        "`invalid`); false is accepted", refused_if=lambda v: v is True),
    'pinned': _ignored('no pinning: --idle-timeout / --max-loaded-models may unload any model'),
    'concurrency_groups': _ignored("LocalAI's per-node co-loading exclusion; memory is bounded here by memory_limit and --max-loaded-models"),
    'options': _ignored("LocalAI's `key:value` options for its backends; `use_jinja` is followed (a GGUF's own template "
                        "is read as Jinja here), the others are not read", ignores=_options_ignored),
    'overrides': _ignored("llama.cpp GGUF metadata (KV) overrides; not applied, the GGUF's own metadata is used"),
    'mcp': _ignored("MCP servers for LocalAI's agent loop; nothing is contacted. Refused with `stdio`: a model file "
                   "does not name commands for the server to run", whole=True,
                   refused_if=lambda v: isinstance(v, dict) and bool(v.get("stdio"))),
    'agent': _ignored("LocalAI's MCP agent loop (cogito); no agent/MCP endpoint here", whole=True),
    'pii': _ignored("PII redaction; refused with `enabled: true`: the file asks for PII to be masked before the model "
                   "sees it, and this server has no redaction", whole=True,
                   refused_if=lambda v: isinstance(v, dict) and v.get("enabled") is True),
    'pii_detection': _ignored("policy for a model used as LocalAI's PII detector; no PII detection here", whole=True),
    'router': _ignored("LocalAI's model router, which sends each request to another model; refused with `candidates`, "
                      "since a different model would then answer under this name here", whole=True,
                      refused_if=lambda v: isinstance(v, dict) and bool(v.get("candidates"))),
    'proxy': _ignored("LocalAI's cloud-proxy upstream; nothing is forwarded. Refused with `api_key_env` or `api_key_file`: "
                     "a model file does not direct the server's secrets or read files outside its folder", whole=True,
                     refused_if=lambda v: isinstance(v, dict) and bool(v.get("api_key_env") or v.get("api_key_file"))),
    'mitm': _ignored("LocalAI's TLS-intercepting proxy; none here", whole=True),
    'limits': _ignored("LocalAI's per-model admission control (503 + Retry-After); requests queue in the model's worker here", whole=True),
    'parameters': _used('request defaults and the weights: see its fields'),
    'parameters.model': _used('the weights file or folder, inside the models folder; required and must exist'),
    'parameters.language': _used('default transcription language for whisper and faster-whisper; no effect on other backends'),
    'parameters.translate': _ignored('translation is the /v1/audio/translations endpoint here; a transcription keeps the spoken language'),
    'parameters.n': _ignored('choices per prompt are per request (`n`)'),
    'parameters.top_p': _used('default top-p for requests that omit it'),
    'parameters.top_k': _used('default top-k'),
    'parameters.min_p': _used('default min-p'),
    'parameters.temperature': _used('default temperature'),
    'parameters.max_tokens': _used("the default completion budget, capped by the room left in the context; 0 or -1: no "
                                   "default, the rest of the context"),
    'parameters.echo': _ignored('echo is per request (/v1/completions `echo`)'),
    'parameters.batch': _ignored("llama.cpp n_batch; prompts are read in `prefill_chunk` tokens here, and an embeddings context's batch is its context size"),
    'parameters.ignore_eos': _ignored('generation always stops at the end-of-generation token'),
    'parameters.n_keep': _ignored('no context shifting here: a request that overflows the context is refused'),
    'parameters.repeat_penalty': _used('default repeat penalty'),
    'parameters.repeat_last_n': _used('window of the penalties'),
    'parameters.frequency_penalty': _used('default frequency penalty'),
    'parameters.presence_penalty': _used('default presence penalty'),
    'parameters.tfz': _used("1.0, its off value, is accepted; any other value is refused: tail-free sampling was removed "
                            "from llama.cpp", refused_if=lambda v: v != 1.0),
    'parameters.typical_p': _used('default typical-p'),
    'parameters.seed': _used('default seed; -1 a new random seed per request'),
    'parameters.logprobs': _ignored('log-probabilities are per request only'),
    'parameters.top_logprobs': _ignored('per request only'),
    'parameters.logit_bias': _ignored('logit bias is per request only'),
    'parameters.negative_prompt': _ignored("negative prompt is per request; the YAML's is not read"),
    'parameters.rope_freq_base': _ignored(_ROPE),
    'parameters.rope_freq_scale': _ignored(_ROPE),
    'parameters.negative_prompt_scale': _ignored('not used by the diffusers pipeline here'),
    'parameters.clip_skip': _ignored('LocalAI does not read it from the YAML either (request field)'),
    'parameters.tokenizer': _ignored('the tokenizer comes with the weights; this path is never opened'),
    'parameters.encoding_format': _ignored('embedding encoding is per request'),
    'parameters.pooling': _used("embeddings: `mean` and `last` pool that way (llama.cpp's pooling); empty or `backend`: the "
                                "model's own pooling (mean when a GGUF names none). `decayed_mean` is refused: llama.cpp "
                                "has no such pooling", refused_if=lambda v: v not in (None, "", "backend", "mean", "last")),
    'parameters.pooling_half_life_tokens': _ignored("only with `pooling: decayed_mean`, which is refused"),
    'system_prompt': _used('Go templates: .SystemPrompt; Jinja templates: a system message put first when the chat has none'),
    'tensor_split': _ignored(_GPU),
    'main_gpu': _ignored(_GPU),
    'rms_norm_eps': _ignored('legacy GGML-era override; a GGUF carries it'),
    'ngqa': _ignored('legacy GGML-era override; a GGUF carries it'),
    'prompt_cache_path': _ignored('llama.cpp prompt-cache file; no file is written from a model YAML here (the path is never opened)'),
    'prompt_cache_all': _ignored('llama.cpp prompt-cache switch; no prompt-cache file here'),
    'prompt_cache_ro': _ignored('llama.cpp prompt-cache switch; no prompt-cache file here'),
    'mirostat_eta': _used("as parameters.mirostat_eta"),
    'mirostat_tau': _used("as parameters.mirostat_tau"),
    'mirostat': _used("LocalAI's place for parameters.mirostat (which wins when both are set): 1 or 2 turn Mirostat on"),
    'gpu_layers': _ignored(_GPU),
    'mmap': _used('llama-cpp: use_mmap when opening the GGUF; no effect on other backends'),
    'mmlock': _ignored("the model's pages are not locked in memory"),
    'low_vram': _ignored(_GPU),
    'reranking': _ignored('reranking here is a sentence-transformers model with known_usecases: [rerank]; a llama-cpp model is not a reranker, and /v1/rerank refuses it (no rerank capability)'),
    'grammar': _ignored("not applied; in LocalAI too a chat or completion request's own `grammar` replaces it (empty "
                       "when the request sends none), so it has no effect there either"),
    'stopwords': _used("stop sequences added to every request's"),
    'cutstrings': _ignored('output post-processing regexes not applied'),
    'extract_regex': _ignored('output post-processing regexes not applied'),
    'trimspace': _ignored('output prefix trimming not applied'),
    'trimsuffix': _ignored('output suffix trimming not applied (generation stops at an end-of-generation token, which is not written)'),
    'context_size': _used("the context per sequence; -1 (or any negative): the GGUF's trained context; absent: the "
                            "server's --context-size, cut to the trained length"),
    'numa': _ignored('NUMA tuning not applied'),
    'lora_adapter': _refused('a LoRA adapter changes what the model is; serving the base model under this name would mislead, and no adapter is loaded here (the path is never opened)'),
    'lora_base': _ignored('only meaningful with a LoRA adapter, which is refused'),
    'lora_adapters': _refused('LoRA adapters change what the model is; serving the base model under this name would mislead (the paths are never opened)'),
    'lora_scales': _ignored('only meaningful with lora_adapters, which is refused'),
    'lora_scale': _ignored('only meaningful with lora_adapter, which is refused'),
    'no_mulmatq': _ignored(_GPU),
    'draft_model': _used("llama-cpp: a smaller model with the same vocabulary (a file in the models folder) drafts "
                         "tokens that the model verifies; unseeded requests only"),
    'n_draft': _used("llama-cpp: the most draft tokens verified a step (default 8)"),
    'quantization': _ignored(_VLLM),
    'load_format': _ignored(_VLLM),
    'gpu_memory_utilization': _ignored(_VLLM),
    'trust_remote_code': _ignored('never honoured: this server runs no code shipped with a model (sentence-transformers and diffusers load offline with it off); a model that needs it fails to load with an error'),
    'enforce_eager': _ignored(_VLLM),
    'swap_space': _ignored(_VLLM),
    'max_model_len': _ignored(_VLLM + '; context_size is the length here'),
    'tensor_parallel_size': _ignored(_VLLM),
    'disable_log_stats': _ignored(_VLLM),
    'dtype': _ignored('vLLM/transformers dtype; CPU backends here choose their own (float32; faster-whisper: parameters.compute_type)'),
    'limit_mm_per_prompt': _ignored(_VLLM, whole=True),
    'engine_args': _ignored(_VLLM, whole=True),
    'mmproj': _used('multimodal projector GGUF for images/audio in chat'),
    'flash_attention': _ignored("llama.cpp's default is used"),
    'no_kv_offloading': _ignored(_GPU),
    'cache_type_k': _ignored("KV cache stays llama.cpp's default f16 (uses more memory than a quantized cache)"),
    'cache_type_v': _ignored("KV cache stays llama.cpp's default f16 (uses more memory than a quantized cache)"),
    'rope_scaling': _ignored(_ROPE),
    'type': _ignored("LocalAI's backend-specific model type (transformers/rerankers); the backends here take the type from the weights"),
    'yarn_ext_factor': _ignored(_ROPE),
    'yarn_attn_factor': _ignored(_ROPE),
    'yarn_beta_fast': _ignored(_ROPE),
    'yarn_beta_slow': _ignored(_ROPE),
    'cfg_scale': _ignored("the YAML's guidance default here is parameters.guidance_scale; a request's cfg_scale is read"),
    'template.chat': _used('chat prompt, Go or Jinja, inline or a <name>.tmpl in the models folder'),
    'template.chat_message': _used('per-message Go template'),
    'template.completion': _used('completion prompt'),
    'template.edit': _used('edit prompt'),
    'template.function': _used("prompt used instead of chat when a request gives tools, if it has the chat template's syntax"),
    'template.use_tokenizer_template': _used("true: the GGUF's own chat template; chat, chat_message and function are "
                                              "skipped, and tool calls are not grammar-constrained (as in LocalAI)"),
    'template.join_chat_messages_by_character': _used('separator between messages in the Go chat path'),
    'template.multimodal': _used("where a message's images and audio go, with Go templates (.Images, .Audio, .Text); "
                                 "LocalAI's default when absent: audio, then images, then the text"),
    'template.reply_prefix': _ignored('not prepended to replies'),
    'function.disable_no_action': _used("no 'answer' tool is added"),
    'function.grammar': _used('the tool-call grammar: see its fields'),
    'function.no_action_function_name': _used('name of the no-action tool'),
    'function.no_action_description_name': _used('description of the no-action tool'),
    'function.response_regex': _used('named-group regexes (name, arguments) that find calls when no grammar constrains the output'),
    'function.json_regex_match': _ignored('not applied; without a grammar every JSON object naming a declared tool is found anywhere in the output'),
    'function.argument_regex': _ignored('argument-extraction regexes not applied; arguments are read as JSON'),
    'function.argument_regex_key_name': _ignored('only with argument_regex, which is not applied'),
    'function.argument_regex_value_name': _ignored('only with argument_regex, which is not applied'),
    'function.replace_function_results': _ignored('output replacements before call parsing not applied', whole=True),
    'function.replace_llm_results': _ignored('output replacements not applied', whole=True),
    'function.capture_llm_results': _ignored('text beside tool calls is not captured separately'),
    'function.function_name_key': _used('JSON key of the function name when parsing free-text calls'),
    'function.function_arguments_key': _used('JSON key of the arguments when parsing free-text calls'),
    'function.xml_format_preset': _ignored(_XML),
    'function.xml_format': _ignored(_XML, whole=True),
    'function.automatic_tool_parsing_fallback': _ignored('output is parsed for calls only when the request gave tools'),
    'function.disable_peg_parser': _ignored('no PEG parser here; this server has its own call parser'),
    'function.grammar.parallel_calls': _used('lets the model write several calls when the request allows it'),
    'function.grammar.disable_parallel_new_lines': _ignored('grammar layout detail not applied'),
    'function.grammar.mixed_mode': _ignored('the grammar is strict here; a text reply goes through the no-action tool'),
    'function.grammar.no_mixed_free_string': _ignored('the grammar is strict here; a text reply goes through the no-action tool'),
    'function.grammar.disable': _used('no grammar: free output, calls found by response_regex or JSON scan'),
    'function.grammar.prefix': _ignored('the grammar here starts at the JSON; no tag before it'),
    'function.grammar.expect_strings_after_json': _ignored('the grammar ends at the JSON here'),
    'function.grammar.properties_order': _ignored("JSON property order is the schema's here"),
    'function.grammar.schema_type': _ignored('JSON grammar only here (no llama3.1 function-tag format)'),
    'function.grammar.triggers': _ignored('no lazy grammars here: a grammar constrains the whole reply', whole=True),
    'diffusers.cuda': _ignored(_GPU),
    'diffusers.pipeline_type': _used("the diffusers backend loads a Stable Diffusion pipeline (image-to-image from the same "
                                     "weights): StableDiffusionPipeline, StableDiffusionImg2ImgPipeline, or DiffusionPipeline "
                                     "(which must then find Stable Diffusion weights). Others (SDXL, SD3, Flux, video) are refused",
                                     refused_if=lambda v: v not in _SD_PIPELINES),
    'diffusers.scheduler_type': _ignored("this server's scheduler field is parameters.scheduler, with other names"),
    'diffusers.enable_parameters': _ignored('every request parameter is always read here'),
    'diffusers.img2img': _ignored('image-to-image is per request here (an `image` in the request), on the same weights'),
    'diffusers.clip_skip': _ignored('CLIP skip not applied'),
    'diffusers.clip_model': _ignored("the pipeline's own text encoder is used; the path is never opened"),
    'diffusers.clip_subfolder': _ignored('only with clip_model, which is not used'),
    'diffusers.control_net': _refused("no ControlNet here: a request's image would be read as an image-to-image start, not as "
                                   "a control map"),
}

NOT_A_FIELD = "not a field of LocalAI's model config nor of this server's (misspelt, or in the wrong place?)"


class FieldRefused(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def _is_set(value: Any) -> bool:
    """A field left empty or switched off asks for nothing, so nothing is said about it."""
    return value is not None and value is not False and value != "" and value != [] and value != {}


def _containers() -> frozenset[str]:
    return frozenset(path.rsplit(".", 1)[0] for path in FIELDS if "." in path)


_CONTAINERS = _containers()


def review(data: Mapping[str, Any], own: Iterable[str]) -> list[tuple[str, str]]:
    """The fields of a model file that are set and have no effect here, each with why, in
    the file's order; `own` are this server's own fields (dotted paths, containers too).
    Raises FieldRefused for the first field whose value this server will not serve."""
    own = frozenset(own)
    ignored: list[tuple[str, str]] = []
    stack: list[tuple[str, Mapping[str, Any]]] = [("", data)]
    while stack:
        prefix, mapping = stack.pop()
        for key, value in mapping.items():
            path = f"{prefix}{key}"
            field = FIELDS.get(path)
            if field is not None and (field.status == REFUSED and _is_set(value)
                                      or field.refused_if is not None and _is_set(value) and field.refused_if(value)):
                raise FieldRefused(path, field.note)
            if isinstance(value, Mapping) and (path in _CONTAINERS or path in own) and not (field and field.whole):
                stack.append((path + ".", value))
                continue
            if field is None and path not in own and prefix + "*" not in own and _is_set(value):
                ignored.append((path, NOT_A_FIELD))
            elif field is not None and field.status == IGNORED and _is_set(value) and (
                    field.ignores is None or field.ignores(value)):
                ignored.append((path, field.note))
    return ignored


def own_fields(properties: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted paths a JSON Schema's `properties` names, nested objects' too; a map whose
    keys are the user's (`additionalProperties` a schema) is `path.*`."""
    paths: set[str] = set()
    for name, schema in properties.items():
        paths.add(prefix + name)
        if isinstance(schema, Mapping) and isinstance(schema.get("additionalProperties"), Mapping):
            paths.add(f"{prefix}{name}.*")
        if isinstance(schema, Mapping) and isinstance(schema.get("properties"), Mapping):
            paths |= own_fields(schema["properties"], f"{prefix}{name}.")
    return paths


def table_markdown() -> str:
    """The README's table: every field, what this server does with it, and why."""
    rows = ["| LocalAI field | here | why |", "|---|---|---|"]
    for path in sorted(FIELDS):
        field = FIELDS[path]
        status = field.status + (" (refused at some values)" if field.refused_if else "")
        name = f"`{path}`" + (" (and all in it)" if field.whole else "")
        rows.append(f"| {name} | {status} | {field.note.replace('|', '/')} |")
    return "\n".join(rows) + "\n"
