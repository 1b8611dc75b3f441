"""Codecs for encoded deployable formats (bytes a user would really store).

``bitpack``: fixed-width b-bit codes packed into bytes; ``huffman``: canonical Huffman coding
(code lengths are the whole table); ``sparse``: relative (delta) indices with filler zeros,
Deep Compression Sec. 2 / Fig. 2; ``container``: a small binary file of named tensors, each
stored raw, bit-packed or as a Huffman-coded sparse codebook layer, decoded into a fresh
model built from its architecture (the same contract as ``torch.save(state_dict)``).
"""
