"""The built-in demo: synthetic faces -> a small trained model -> an HTML report with scores."""
from twingan.demo.run import run_demo

__all__ = ["run_demo"]
