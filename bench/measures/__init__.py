"""The eight measures; each module exposes ``run(context) -> result`` for its numbers."""
