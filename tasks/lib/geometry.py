"""The image geometry every dataset shares, written once: square grayscale images of IMAGE_SIDE pixels a side
(MNIST's 28x28). Conversion (images.py), the data checks (expectations.py, outputs.py), the sample digits and the
model builders (architectures.py) read it from here."""

IMAGE_SIDE = 28
IMAGE_SHAPE = (IMAGE_SIDE, IMAGE_SIDE)
