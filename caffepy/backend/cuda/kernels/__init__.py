"""numba.cuda kernels of the CUDA backend, one module per op family.

Each kernel is a pure function on device arrays (CuPy arrays on a GPU, NumPy
arrays under numba's CUDA simulator), one thread per output element in a
grid-stride loop, as Caffe's ``CUDA_KERNEL_LOOP``. Launch them with
:func:`caffepy.backend.cuda.kernels.launch.launch`.
"""
