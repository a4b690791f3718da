import sys

from keras_lopt_cli import main

sys.exit(main())
