"""Vector indexes over item text and model embeddings (faiss), and the sentence encoder.

Import the submodules directly: `tools.index.encoder` pulls in torch and transformers, which the
index modules do not need.
"""
