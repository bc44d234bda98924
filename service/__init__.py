"""Inline steel strip inspection: defect segmentation, model store, serving and compression."""
