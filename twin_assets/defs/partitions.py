"""One partition per author: a twin is trained only on its own author's data."""

import dagster as dg

authors_partitions = dg.DynamicPartitionsDefinition(name="authors")
