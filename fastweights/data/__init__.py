"""Synthetic algorithmic datasets: generators that reproduce the official text files, and readers."""
