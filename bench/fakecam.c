/* A V4L2 webcam for the benches, inside the process that opens it (LD_PRELOAD): the daemon's own
 * webcam path (OpenCV's V4L2 back-end, `service/camera.py` reading a kept-open device) runs on
 * frames replayed from a file, where this machine has no /dev/video* and no v4l2loopback.
 *
 * It behaves as a UVC webcam's driver does: one YUYV mode (FAKECAM_SIZE, e.g. 640x480); the frame
 * rate the program asks for with VIDIOC_S_PARM (30 until then); from VIDIOC_STREAMON the sensor
 * delivers a frame every period into the oldest buffer the program has queued, and drops it when none
 * is queued; VIDIOC_DQBUF hands out filled buffers oldest first, or EAGAIN; select() on the device's
 * descriptor (a timerfd) waits for the next one. At least 2 buffers are granted even when 1 is asked
 * for, as some drivers keep a minimum: the dearer case, one more stale frame to drop.
 * What a frame shows is the replay: FAKECAM_FRAMES holds raw YUYV frames back to back, played at
 * FAKECAM_FPS from the first VIDIOC_STREAMON on (looping), whose wall-clock time is written to
 * FAKECAM_LOG. A dequeued buffer's pages are mapped onto its frame in the file: as with a driver's
 * DMA, the CPU copies nothing, and the program pays for reading the frame when it reads it.
 *
 *     gcc -O2 -shared -fPIC -o fakecam.so bench/fakecam.c -ldl -lm
 *     LD_PRELOAD=fakecam.so FAKECAM_FRAMES=f.yuyv FAKECAM_SIZE=640x480 FAKECAM_FPS=5 program
 *
 * FAKECAM_DEVICE is the node it answers for (default /dev/video0); every other file is the real one.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/videodev2.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUFFERS 8
#define MIN_BUFFERS 2
#define MAX_OPEN 4

struct buffer {
    void *start;          /* the program's mapping, NULL until it maps the buffer */
    int queued, done;     /* with the driver, waiting for a frame; filled, waiting for DQBUF */
    uint64_t order;       /* when it was queued, then when it was filled: oldest first */
    double at;            /* the capture time of its frame (CLOCK_MONOTONIC seconds) */
    uint32_t sequence;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int fds[MAX_OPEN] = {-1, -1, -1, -1};
static struct buffer buffers[MAX_BUFFERS];
static unsigned nbuffers, width, height;
static size_t frame_size, buffer_stride;
static double rate = 30.0, replay_fps = 5.0;
static double zero = -1.0;      /* the replay clock's zero: the first STREAMON */
static double streamed_at;      /* this stream's STREAMON: its sensor's clock */
static long last_tick;          /* the last sensor period dealt with */
static int streaming;
static uint64_t counter;
static uint32_t sequence;
static int frames_fd = -1;
static long frame_count;

static int (*real_open)(const char *, int, ...);
static int (*real_close)(int);
static int (*real_ioctl)(int, unsigned long, ...);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);

__attribute__((constructor)) static void init(void) {
    real_open = dlsym(RTLD_NEXT, "open");
    real_close = dlsym(RTLD_NEXT, "close");
    real_ioctl = dlsym(RTLD_NEXT, "ioctl");
    real_mmap = dlsym(RTLD_NEXT, "mmap");
    real_munmap = dlsym(RTLD_NEXT, "munmap");
    const char *size = getenv("FAKECAM_SIZE"), *fps = getenv("FAKECAM_FPS");
    if (!size || sscanf(size, "%ux%u", &width, &height) != 2) width = 640, height = 480;
    if (fps) replay_fps = atof(fps);
    frame_size = (size_t)width * height * 2;
    buffer_stride = (frame_size + 4095) & ~(size_t)4095;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int is_ours(int fd) {
    for (int i = 0; i < MAX_OPEN; i++)
        if (fd >= 0 && fds[i] == fd) return 1;
    return 0;
}

static int ours(const char *path) {
    const char *device = getenv("FAKECAM_DEVICE");
    return path && getenv("FAKECAM_FRAMES") && strcmp(path, device ? device : "/dev/video0") == 0;
}

/* The sensor's periods up to `t`: each fills the oldest queued buffer, if any. */
static void advance(double t) {
    if (!streaming) return;
    long tick = (long)floor((t - streamed_at) * rate);
    while (last_tick < tick) {
        struct buffer *oldest = NULL;
        for (unsigned i = 0; i < nbuffers; i++)
            if (buffers[i].queued && (!oldest || buffers[i].order < oldest->order)) oldest = &buffers[i];
        if (!oldest) {
            last_tick = tick;  /* nobody queued a buffer: these frames are dropped */
            break;
        }
        last_tick++;
        oldest->queued = 0, oldest->done = 1, oldest->order = ++counter;
        oldest->at = streamed_at + last_tick / rate;
        oldest->sequence = sequence++;
    }
}

/* Every descriptor of the device reads as ready when a filled buffer waits, else at the next period
 * that fills one (a timerfd: select() and poll() wait on it as on a driver's queue). */
static void arm(void) {
    int any_done = 0, any_queued = 0;
    for (unsigned i = 0; i < nbuffers; i++) any_done |= buffers[i].done, any_queued |= buffers[i].queued;
    struct itimerspec when = {0};
    if (streaming && (any_done || any_queued)) {
        double at = any_done ? 1e-9 : streamed_at + (last_tick + 1) / rate;
        when.it_value.tv_sec = (time_t)at;
        when.it_value.tv_nsec = (long)((at - floor(at)) * 1e9);
        if (!when.it_value.tv_sec && !when.it_value.tv_nsec) when.it_value.tv_nsec = 1;
    }
    for (int i = 0; i < MAX_OPEN; i++)
        if (fds[i] >= 0) timerfd_settime(fds[i], TFD_TIMER_ABSTIME, &when, NULL);
}

static void stop_streaming(void) {
    streaming = 0;
    for (unsigned i = 0; i < nbuffers; i++) buffers[i].queued = buffers[i].done = 0;
}

static int fail(int error) {
    errno = error;
    return -1;
}

/* The frame of `b`'s capture time, put in its buffer the way a driver's DMA does, without the CPU
 * copying it: the buffer's pages are mapped onto the frame in the file (read when the program
 * reads them); a frame size that is not a whole number of pages is copied instead. */
static void fill(struct buffer *b) {
    if (frames_fd < 0) {
        frames_fd = real_open(getenv("FAKECAM_FRAMES"), O_RDONLY | O_CLOEXEC);
        off_t end = frames_fd < 0 ? 0 : lseek(frames_fd, 0, SEEK_END);
        frame_count = end / (off_t)frame_size;
    }
    if (frame_count <= 0 || !b->start) return;
    long index = (long)floor((b->at - zero) * replay_fps);
    off_t offset = (off_t)(index % frame_count) * (off_t)frame_size;
    if (frame_size % 4096 == 0 &&
        real_mmap(b->start, frame_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, frames_fd, offset) != MAP_FAILED)
        return;
    size_t got = 0;
    while (got < frame_size) {
        ssize_t n = pread(frames_fd, (char *)b->start + got, frame_size - got, offset + (off_t)got);
        if (n <= 0) break;
        got += (size_t)n;
    }
}

static void describe(struct v4l2_buffer *v, unsigned index) {
    struct buffer *b = &buffers[index];
    memset(v, 0, sizeof *v);
    v->index = index;
    v->type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
    v->memory = V4L2_MEMORY_MMAP;
    v->length = (uint32_t)frame_size;
    v->m.offset = (uint32_t)(index * buffer_stride);
    v->field = V4L2_FIELD_NONE;
    v->flags = V4L2_BUF_FLAG_TIMESTAMP_MONOTONIC | (b->start ? V4L2_BUF_FLAG_MAPPED : 0) |
               (b->queued ? V4L2_BUF_FLAG_QUEUED : 0) | (b->done ? V4L2_BUF_FLAG_DONE : 0);
    v->bytesused = b->done ? (uint32_t)frame_size : 0;
    v->timestamp.tv_sec = (time_t)b->at;
    v->timestamp.tv_usec = (suseconds_t)((b->at - floor(b->at)) * 1e6);
    v->sequence = b->sequence;
}

static void format(struct v4l2_format *f) {
    memset(&f->fmt.pix, 0, sizeof f->fmt.pix);
    f->fmt.pix.width = width;
    f->fmt.pix.height = height;
    f->fmt.pix.pixelformat = V4L2_PIX_FMT_YUYV;
    f->fmt.pix.field = V4L2_FIELD_NONE;
    f->fmt.pix.bytesperline = width * 2;
    f->fmt.pix.sizeimage = (uint32_t)frame_size;
    f->fmt.pix.colorspace = V4L2_COLORSPACE_SRGB;
}

static int device_ioctl(unsigned long request, void *arg) {
    switch (request) {
    case VIDIOC_QUERYCAP: {
        struct v4l2_capability *c = arg;
        memset(c, 0, sizeof *c);
        strcpy((char *)c->driver, "fakecam");
        strcpy((char *)c->card, "facewarden bench webcam");
        strcpy((char *)c->bus_info, "platform:fakecam");
        c->version = 0x060000;
        c->device_caps = V4L2_CAP_VIDEO_CAPTURE | V4L2_CAP_STREAMING;
        c->capabilities = c->device_caps | V4L2_CAP_DEVICE_CAPS;
        return 0;
    }
    case VIDIOC_G_INPUT:
        *(int *)arg = 0;
        return 0;
    case VIDIOC_S_INPUT:
        return *(int *)arg == 0 ? 0 : fail(EINVAL);
    case VIDIOC_ENUMINPUT: {
        struct v4l2_input *in = arg;
        if (in->index != 0) return fail(EINVAL);
        memset(in, 0, sizeof *in);
        strcpy((char *)in->name, "Camera 1");
        in->type = V4L2_INPUT_TYPE_CAMERA;
        return 0;
    }
    case VIDIOC_ENUM_FMT: {
        struct v4l2_fmtdesc *d = arg;
        if (d->index != 0 || d->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        d->flags = 0;
        strcpy((char *)d->description, "YUYV 4:2:2");
        d->pixelformat = V4L2_PIX_FMT_YUYV;
        return 0;
    }
    case VIDIOC_ENUM_FRAMESIZES: {
        struct v4l2_frmsizeenum *s = arg;
        if (s->index != 0 || s->pixel_format != V4L2_PIX_FMT_YUYV) return fail(EINVAL);
        s->type = V4L2_FRMSIZE_TYPE_DISCRETE;
        s->discrete.width = width, s->discrete.height = height;
        return 0;
    }
    case VIDIOC_G_FMT:
    case VIDIOC_S_FMT:
    case VIDIOC_TRY_FMT: {
        struct v4l2_format *f = arg;
        if (f->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        if (request == VIDIOC_S_FMT && streaming) return fail(EBUSY);
        format(f);  /* one mode: whatever was asked, this is what the camera does */
        return 0;
    }
    case VIDIOC_G_PARM:
    case VIDIOC_S_PARM: {
        struct v4l2_streamparm *p = arg;
        if (p->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        struct v4l2_fract *t = &p->parm.capture.timeperframe;
        if (request == VIDIOC_S_PARM && t->numerator && t->denominator) {
            double asked = (double)t->denominator / t->numerator;
            rate = asked < 5 ? 5 : asked > 30 ? 30 : asked;
            if (streaming) {  /* a new rate starts a new count of periods from now */
                streamed_at = now();
                last_tick = 0;
            }
        }
        memset(&p->parm.capture, 0, sizeof p->parm.capture);
        p->parm.capture.capability = V4L2_CAP_TIMEPERFRAME;
        p->parm.capture.timeperframe.numerator = 1000;
        p->parm.capture.timeperframe.denominator = (uint32_t)lround(rate * 1000);
        p->parm.capture.readbuffers = 0;
        return 0;
    }
    case VIDIOC_REQBUFS: {
        struct v4l2_requestbuffers *r = arg;
        if (r->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || r->memory != V4L2_MEMORY_MMAP) return fail(EINVAL);
        if (streaming) return fail(EBUSY);
        unsigned count = r->count == 0 ? 0 : r->count < MIN_BUFFERS ? MIN_BUFFERS : r->count > MAX_BUFFERS ? MAX_BUFFERS : r->count;
        memset(buffers, 0, sizeof buffers);
        nbuffers = count;
        r->count = count;
        r->capabilities = V4L2_BUF_CAP_SUPPORTS_MMAP;
        return 0;
    }
    case VIDIOC_QUERYBUF:
    case VIDIOC_QBUF: {
        struct v4l2_buffer *v = arg;
        if (v->type != V4L2_BUF_TYPE_VIDEO_CAPTURE || v->index >= nbuffers) return fail(EINVAL);
        if (request == VIDIOC_QBUF) {
            struct buffer *b = &buffers[v->index];
            if (b->queued || b->done) return fail(EINVAL);
            advance(now());  /* the periods before it was queued are not its */
            b->queued = 1, b->order = ++counter;
            arm();
        }
        describe(v, v->index);
        return 0;
    }
    case VIDIOC_DQBUF: {
        struct v4l2_buffer *v = arg;
        if (v->type != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        if (!streaming) return fail(EINVAL);
        advance(now());
        struct buffer *oldest = NULL;
        for (unsigned i = 0; i < nbuffers; i++)
            if (buffers[i].done && (!oldest || buffers[i].order < oldest->order)) oldest = &buffers[i];
        if (!oldest) {
            arm();
            return fail(EAGAIN);
        }
        fill(oldest);
        describe(v, (unsigned)(oldest - buffers));
        v->flags &= ~(uint32_t)V4L2_BUF_FLAG_DONE;  /* the program's now */
        oldest->done = 0;
        arm();
        return 0;
    }
    case VIDIOC_STREAMON:
        if (*(int *)arg != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        if (!streaming) {
            streaming = 1;
            streamed_at = now();
            last_tick = 0;  /* the first frame comes a period after the sensor starts */
            if (zero < 0) {
                zero = streamed_at;
                const char *log = getenv("FAKECAM_LOG");
                FILE *out = log ? fopen(log, "a") : NULL;
                if (out) {
                    struct timespec wall;
                    clock_gettime(CLOCK_REALTIME, &wall);
                    fprintf(out, "replay started at %.3f\n", wall.tv_sec + wall.tv_nsec / 1e9);
                    fclose(out);
                }
            }
        }
        arm();
        return 0;
    case VIDIOC_STREAMOFF:
        if (*(int *)arg != V4L2_BUF_TYPE_VIDEO_CAPTURE) return fail(EINVAL);
        stop_streaming();
        arm();
        return 0;
    default:
        return fail(ENOTTY);  /* controls, cropping, standards: a camera without them */
    }
}

static int open_device(void) {
    pthread_mutex_lock(&lock);
    int slot = -1;
    for (int i = 0; i < MAX_OPEN; i++)
        if (fds[i] < 0) slot = i;
    int fd = slot < 0 ? -1 : timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (fd >= 0) fds[slot] = fd;
    pthread_mutex_unlock(&lock);
    if (slot < 0) return fail(EBUSY);
    return fd;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
    va_end(ap);
    return ours(path) ? open_device() : real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int close(int fd) {
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAX_OPEN; i++)
        if (fd >= 0 && fds[i] == fd) {
            fds[i] = -1;
            int left = 0;
            for (int j = 0; j < MAX_OPEN; j++) left |= fds[j] >= 0;
            if (!left) {  /* the last descriptor: the driver lets go of the stream and its buffers */
                stop_streaming();
                nbuffers = 0;
            }
        }
    pthread_mutex_unlock(&lock);
    return real_close(fd);
}

int ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    pthread_mutex_lock(&lock);
    if (!is_ours(fd)) {
        pthread_mutex_unlock(&lock);
        return real_ioctl(fd, request, arg);
    }
    int result = device_ioctl(request, arg);
    int error = errno;
    pthread_mutex_unlock(&lock);
    errno = error;
    return result;
}

void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset) {
    if (fd < 0) return real_mmap(addr, length, prot, flags, fd, offset);
    pthread_mutex_lock(&lock);
    if (!is_ours(fd)) {
        pthread_mutex_unlock(&lock);
        return real_mmap(addr, length, prot, flags, fd, offset);
    }
    unsigned index = (unsigned)(offset / (off_t)buffer_stride);
    void *start = MAP_FAILED;
    if (index < nbuffers && length <= buffer_stride) {
        start = real_mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (start != MAP_FAILED) buffers[index].start = start;
    } else {
        errno = EINVAL;
    }
    pthread_mutex_unlock(&lock);
    return start;
}

void *mmap64(void *addr, size_t length, int prot, int flags, int fd, off_t offset) __attribute__((alias("mmap")));

int munmap(void *addr, size_t length) {
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < nbuffers; i++)
        if (buffers[i].start == addr) buffers[i].start = NULL;
    pthread_mutex_unlock(&lock);
    return real_munmap(addr, length);
}
