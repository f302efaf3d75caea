"""Evaluation: does a trained twin write like its author, and may it be deployed?

Plain logic (no Dagster, no `resources`): the asset in `twin_assets/defs/evaluation/` hands in
the held-out rows, the local model directories and the storage/generation protocols, and gets an
`EvaluationReport` back. One module per job:
- `config`: what runs and the gate's thresholds;
- `models`: one base model in memory, adapters switched (peft), never reloaded per metric;
- `scoring`: batched log-likelihoods (held-out NLL, implicit DPO rewards);
- `generation`: batched greedy generation with a KV cache;
- `text_metrics`: ROUGE-L, chrF, style profile distance, degeneration;
- `judge`: LLM-as-judge over the `TextGenerator` protocol (rubric, pairwise with swapped positions);
- `rag`: retrieval hit rate@k / MRR and ragas' non-LLM context precision/recall;
- `gate`: the deploy verdict;
- `report`: orchestration, the versioned artifact (JSON, Markdown, PNG) and its cache.
"""
