"""Dagster resources: every connection from the pipeline to the outside world lives here.

Each module holds one `ConfigurableResource`. Defaults are embedded/local so the whole graph
runs offline on one laptop; production settings come from environment variables.
"""
