#ifndef SFT_VERSION_H
#define SFT_VERSION_H
#define SFTKIT_VERSION "0.1.0"
#endif
