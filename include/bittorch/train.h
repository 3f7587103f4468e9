#pragma once

// Umbrella header of the training toolkit (library BitTorch::train).
#include <bittorch/train/autocast.h>
#include <bittorch/train/checkpoint.h>
#include <bittorch/train/device.h>
#include <bittorch/train/fused_adamw.h>
#include <bittorch/train/metrics.h>
#include <bittorch/train/profile.h>
#include <bittorch/train/progress.h>
#include <bittorch/train/schedule.h>
#include <bittorch/train/sharded_adamw.h>
#include <bittorch/train/trainer.h>
