"""Wiring, one function per command: finetune, evaluate (pre-training: vlp.pretrain)."""
