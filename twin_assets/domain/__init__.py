"""Typed models for everything the pipeline stores: documents, chunks, dataset rows, models."""
