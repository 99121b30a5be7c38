"""Turkish text rules: normalization and casing, the chat format, the treebank's gold segmentation."""
