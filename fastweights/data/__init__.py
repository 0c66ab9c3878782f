"""Datasets. Algorithmic tasks: generators that reproduce the official text files, and readers
(`code_execution`, `listops`, `records`, `tfds_builders`). Language modelling: word-level
corpora tokenised into a memory-mapped cache (`corpus`, with `wikitext` from local files and
the offline `shakespeare`) and the official ordered batching (`lm_batches`). `cache` holds
the cache location and the build-once-under-a-lock helper. Nothing heavy is imported here."""
