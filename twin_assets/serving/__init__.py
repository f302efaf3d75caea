"""The inference service: advanced RAG over an author's own writing and generation in their
voice, many authors on one process.

Plain logic over protocols (stores, embedder, generator); the HTTP app (`app`) is built from a
`TwinService` that the top-level `twin_assets.server` wires to the configured resources.
"""
