"""python -m prefix_rft_pl fit --config configs/toy/prefix_rft.yaml"""

from prefix_rft_pl.cli import main

if __name__ == "__main__":
    main()
