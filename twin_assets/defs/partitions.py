"""One partition per author: a twin is trained only on its own author's data."""

import dagster as dg

# The partitions definition's name, typed `str` (the definition's `.name` is `str | None`)
AUTHORS_PARTITION = "authors"

authors_partitions = dg.DynamicPartitionsDefinition(name=AUTHORS_PARTITION)
