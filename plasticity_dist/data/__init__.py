"""The data pipeline: text sources, the shard format, preprocessing into shards and the streaming loader."""
