"""`make pi-check`'s parts: the host (tools, binfmt, commands), the images (cached arm64 roots), the wheels
(pip's downloads, done on the host) and the steps run inside each image. `tools/pi_check.py` drives them."""
