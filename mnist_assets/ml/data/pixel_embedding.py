"""An embedding of images from their pixels alone: what a pool offers where no CLIP weights exist.

label_requests ranks the pool on it, and the few-labels checkpoint spreads labels along it: the
pixels' principal components, or their gradients' (HOG), as the dataset declares (`pool_embedding`).
"""

import numpy as np

PCA_COMPONENTS = 50


def pool_embedding(images: np.ndarray, kind: str = "pixels", seed: int = 0) -> np.ndarray:
    """The declared embedding of a pool (`pool_embedding`: "pixels" or "hog")."""
    return {"pixels": pixel_embedding, "hog": hog_embedding}[kind](images, seed=seed)


def pixel_embedding(images: np.ndarray, components: int = PCA_COMPONENTS, seed: int = 0) -> np.ndarray:
    """What the pool itself offers without CLIP weights: its pixels' principal components (not whitened:
    whitening lost 5-13 points of a linear probe at 20-200 labels, TypiClust and random alike)."""
    from sklearn.decomposition import PCA

    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return PCA(n_components=min(components, *flat.shape), whiten=False, random_state=seed).fit_transform(flat)


def hog_embedding(images: np.ndarray, components: int = PCA_COMPONENTS, seed: int = 0) -> np.ndarray:
    """Histograms of oriented gradients (scikit-image: 9 orientations, 7-pixel cells, 2x2 blocks) of
    each image, channels averaged, reduced to their principal components: on MNIST the labels spread
    along it were 1.7-4.6 points more often right than along the pixels' (scripts/pool_embedding_probe.py)."""
    from skimage.feature import hog
    from sklearn.decomposition import PCA

    gray = images.astype(np.float32)
    if gray.ndim == 4:  # (n, channels, height, width) or (n, height, width, channels): average the channels
        gray = gray.mean(axis=1 if gray.shape[1] in (1, 3) else 3)
    features = np.stack([hog(image, orientations=9, pixels_per_cell=(7, 7), cells_per_block=(2, 2)) for image in gray])
    return PCA(n_components=min(components, *features.shape), random_state=seed).fit_transform(features.astype(np.float32))
