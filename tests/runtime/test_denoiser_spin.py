"""The denoiser's onnxruntime threads spin only where numpy's BLAS runs on one thread: beside
OpenBLAS's own busy-waiting pool the spinning made an edit slower, not faster."""

from threadpoolctl import threadpool_limits

from emort import Enhancer
from emort.runtime.session import blas_single_threaded


def test_the_denoiser_spins_only_beside_a_single_threaded_blas():
    with threadpool_limits(limits=1, user_api="blas"):
        assert blas_single_threaded()
        enh = Enhancer.load(device="cpu")
        assert enh.denoiser.spin and not enh.style.spin and not enh.scorer.ser.spin
    with threadpool_limits(limits=2, user_api="blas"):
        if not blas_single_threaded():  # a one-core machine's BLAS stays at one thread
            assert not Enhancer.load(device="cpu").denoiser.spin
        assert Enhancer.load(device="cpu", spin=True).denoiser.spin  # the caller decides
    with threadpool_limits(limits=1, user_api="blas"):
        assert not Enhancer.load(device="cpu", spin=False).denoiser.spin
