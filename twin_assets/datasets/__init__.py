"""Instruction and preference datasets: extracts of the author's own text, curated, versioned."""
