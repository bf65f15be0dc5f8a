"""What goes into save_dir beside the weights: the model card (card.py), the extra formats (formats.py), the tensor
digest (digest.py), and save_dir itself (place.py)."""
