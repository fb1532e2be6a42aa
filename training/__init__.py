"""Training the relighting network: data and the synthetic renderer, losses, the loop, evaluation."""
