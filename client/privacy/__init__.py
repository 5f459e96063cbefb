"""The site's privacy machinery at run time: trainer choice, DP-SGD trainer, privacy ledger."""
