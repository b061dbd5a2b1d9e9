"Reinforcement learning for language models, built in the course: GRPO (chapter 11)."
