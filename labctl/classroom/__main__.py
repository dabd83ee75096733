from labctl.classroom.commands import main

main()
