"""Text generation behind one interface: an OpenAI-compatible server, a local transformers model,
or nothing at all ("offline").

Why one interface: dataset generation (instructions, generic answers, quality judging) and later
evaluation (LLM-as-a-judge) must not care whether the words come from OpenAI, vLLM, Ollama, TGI,
this project's own endpoint or a small local model. Why "offline": the pipeline must build its
datasets with no LLM at all (CI, laptops, air-gapped runs); callers check `uses_llm` and fall back
to their deterministic generators.

One module per job:
- `errors`: what a backend raises (transient: retried; permanent: skipped);
- `backend`: the backend protocols and the raw completion they return;
- `openai_backend`, `transformers_backend` (with its per-process model cache): the backends;
- `json_output`: the JSON object inside a completion;
- `metering`: thread-safe usage counters;
- `generator`: `RetryingTextGenerator`, retries and acceptance over any backend;
- `resource`: `TextGeneratorResource`, the Dagster configuration that builds generators.
The models (`Generation`, `GenerationUsage`) and the `TextGenerator` protocol the dataset code is
typed against live in `twin_assets.domain.generation`.
"""

from resources.llm.generator import RetryingTextGenerator
from resources.llm.json_output import parse_json_object
from resources.llm.resource import TextGeneratorResource
from twin_assets.domain.generation import Generation, GenerationUsage

__all__ = [
    "Generation",
    "GenerationUsage",
    "RetryingTextGenerator",
    "TextGeneratorResource",
    "parse_json_object",
]
