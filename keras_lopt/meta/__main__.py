import sys

from keras_lopt.meta.cli import main

sys.exit(main())
