bucket         = "magento-production-terraform-state"
key            = "compute/terraform.tfstate"
region         = "eu-west-1"
dynamodb_table = "magento-production-terraform-locks"
encrypt        = true
