"""Data: the one image loader, domain datasets, the synthetic faces, augmentation."""
