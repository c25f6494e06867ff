"""The bundled prompt set (prompts.jsonl), read by raftkit.datasets.load_prompts()."""
