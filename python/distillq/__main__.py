"""python3 -m distillq ... = distillq-torch-teacher ..."""
import sys

from .torch_teacher import main

sys.exit(main())
