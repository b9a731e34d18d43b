/* threads.h - one thread policy for the programs that run the model on the CPU (OpenMP
 * parallel loops and OpenBLAS gemm threads on the same cores).
 *
 * libgomp's default wait policy spins an idle OpenMP thread for ~300k iterations (~7.6 ms
 * here) after every parallel region and barrier; OMP_WAIT_POLICY=passive sleeps at
 * once. Neither fits: with passive waits every parallel region pays a futex wake-up of the
 * other threads, which on a VM is an inter-processor interrupt to a halted vCPU (~50-100 us
 * measured here, against ~1 ms of work in a decode step's matmul); with the long default
 * spin, threads that finished a loop burn the cores that the next gemm or another process
 * needs. A short spin (GOMP_SPINCOUNT, ~0.1 ms) keeps the hand-offs inside a decode step or
 * between two ops cheap and gives the cores back soon after. OpenBLAS
 * should be its OpenMP build (the Makefile links it when installed): then its gemm runs on
 * the same libgomp threads instead of a second pool of spinning pthreads.
 *
 * libgomp reads these variables once, when it is loaded, before main() runs (an ELF
 * .preinit_array hook is too late too: glibc re-reads the environment from the stack after
 * it), so the only way for a program to choose the policy itself is to set the variable and
 * exec itself again, once, first thing in main().
 *
 * Who calls it: every program that runs model_forward / model_decode / generate / training
 * (sft-train, sft-eval, sft-serve, lora-merge, the model unit tests, bench drivers): call
 * sft_threads_init(argc, argv) as the first statement of main(), before opening anything.
 * No state is owned; nothing to free. */
#ifndef SFT_THREADS_H
#define SFT_THREADS_H

/* libgomp spin iterations before an idle thread sleeps. Each is a `pause` (~27 ns measured
 * on this project's AMD EPYC VM: 5000 spin ~0.14 ms; libgomp's default 300000 ~7.6 ms).
 * SmolLM2 decoding on 2 threads ran the same with 2000, 5000 and 20000 (bench/infer_cpu). */
#define SFT_GOMP_SPINCOUNT "5000"

/* When neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set: sets GOMP_SPINCOUNT and
 * re-executes /proc/self/exe with argv (does not return on success). Otherwise (or when the
 * exec fails: then the program simply runs with libgomp's default) returns 0. The user's
 * own setting always wins. Thread counts stay OMP_NUM_THREADS / OPENBLAS_NUM_THREADS. */
int sft_threads_init(int argc, char **argv);

#endif
