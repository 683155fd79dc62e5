"""Training stages: `pretrain_encoder` (DNA tokenizer + masked-LM BERT on the reference windows)."""
