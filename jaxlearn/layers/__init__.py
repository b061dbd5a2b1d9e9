"Layers shared by every model: norms, attention, RoPE, MLPs."
