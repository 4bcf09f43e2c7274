"""The tools the ``caffepy`` commands call: convert_imageset, compute_image_mean,
the Fashion-MNIST databases, ... (functions returning simple stats)."""
