"PyTorch reference implementations the course checks its models against (torch is a dev dependency only)."
