"""Offline pipelines beside the alignment loop: a Bradley–Terry reward model
(`raftkit train-rm`), offline DPO (`raftkit dpo`) and completion-only SFT (`raftkit sft`). Each reads a
dataset file, trains a model and writes a folder that the rest of raftkit loads
(`--reward reward_model:model=DIR/model`, `--model DIR/model`).
"""
