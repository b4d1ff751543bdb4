"""`edge-sdk render poses.jsonl --source video.mp4|images/ -o overlays/`: draw saved poses on their frames."""


def register(subparsers):
    p = subparsers.add_parser(
        "render", help="draw saved poses (run --save) on the video or images they came from, offline",
        description="Draw the pose messages of a JSON lines file (`edge-sdk run --save poses.jsonl`) on the "
                    "frames of the source they came from: one PNG per frame in a folder, or one video.")
    p.add_argument("poses", metavar="poses.jsonl", help="JSON lines written by `edge-sdk run --save`")
    p.add_argument("--source", help="the video file or image folder the poses came from (default: blank canvases)")
    p.add_argument("-o", "--output", required=True, metavar="DIR|OUT.mp4",
                   help="a folder (OUTPUT/DEVICE/SEQ.png, one per frame) or a .mp4/.avi video")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate of a video output (default 15)")
    p.set_defaults(func=run)


def run(args):
    from edge_sdk.render import render_poses

    report = render_poses(args.poses, args.output, source=args.source, fps=args.fps)
    print("rendered {} frame(s) into {}".format(report.written, report.output))
    if report.blank:
        print("warning: {} message(s) had no frame of their size in {} and were drawn on a blank canvas "
              "(is it the source the poses came from?)".format(report.blank, args.source))
    return 0
