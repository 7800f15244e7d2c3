from acquire_vf._cli import main

main()
