from rtc_annotator.cli import main

main()
